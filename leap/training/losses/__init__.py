"""Training objectives, one per file (in the style of sentence-transformers' ``losses/``).

* :mod:`leap.training.losses.terms`: the LEAP loss terms as pure tensor functions (Eq. 4-9).
* :mod:`leap.training.losses.leap_loss`: the LEAP objective, :func:`leap_loss` and :class:`LeapLoss`.
* :mod:`leap.training.losses.layerskip`: LayerSkip adapted to embeddings.
* :mod:`leap.training.losses.adaptive_layer`: sentence-transformers' ``AdaptiveLayerLoss``.

The registry from objective names to these classes is :mod:`leap.training.objectives`.
"""
