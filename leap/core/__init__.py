"""The exit rule and what it computes with, with no serving engine attached.

* :mod:`leap.core.exit_config`: the rule (:class:`~leap.core.exit_config.ExitConfig`, paper
  Algorithm 1, Eq. 6, Table 10) and the ``leap_exit.json`` file it is saved in;
* :mod:`leap.core.early_exit`: the layer loop with per-row exit, and its simulation on cached
  layer vectors;
* :mod:`leap.core.pooling`, :mod:`leap.core.layer_maps`: the pooled vector ``p_l`` of a layer
  and the per-layer maps into the last layer's space;
* :mod:`leap.core.metrics`, :mod:`leap.core.common_depth`: exit statistics, layer geometry,
  and pairs scored at the depth both sides reached;
* :mod:`leap.core.settings`: how a setting is declared (defaults, docs, schema).
"""
