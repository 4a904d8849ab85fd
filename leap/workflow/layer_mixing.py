"""Layer mixing, SLED-style: use every layer instead of exiting (not in the paper).

SLED (Self Logits Evolution Decoding, one of the three early-exit systems of the survey
beside the paper) reads every layer of a decoder and contrasts the final layer's logits
with earlier ones instead of stopping early. Its analogue for a sentence embedding is a mix
of the pooled layer vectors ``p_l`` of one full pass (``[L, N, d]``, not normalised, maps
not applied: a mix is a different embedding of the same full-depth compute, not an exit):

* ``final``: ``p_L`` (what the model serves at full depth);
* ``mean_last2`` / ``mean_last3``: the mean of the last two / three layers;
* ``first_last``: the mean of layers 1 and L (the "first-last average" of the STS literature);
* ``contrast``: ``p_L + a (p_L - p_l)``, the SLED-like contrast, with ``a`` and ``l``
  chosen on a dev split (:func:`choose_contrast`) and reported on test.

Mean pooling is linear, so the mean of pooled layers equals pooling the mean of the token
states. Quality functions take ``[N, d]`` L2-normalised embeddings
(:mod:`leap.workflow.frontier`'s ``QualityFn``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

QualityFn = Callable[[np.ndarray], float]
CONTRAST_ALPHAS = (0.1, 0.25, 0.5, 1.0)
"""The contrast weights ``a`` tried on dev."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def mixes(layer_vectors: np.ndarray) -> dict[str, np.ndarray]:
    """``{name: [N, d] L2-normalised embedding}`` of the fixed mixes of ``[L, N, d]`` pooled vectors."""
    v = np.asarray(layer_vectors, dtype=np.float64)
    n_layers = v.shape[0]
    out = {"final": v[-1], "first_last": (v[0] + v[-1]) / 2}
    if n_layers >= 2:
        out["mean_last2"] = v[-2:].mean(0)
    if n_layers >= 3:
        out["mean_last3"] = v[-3:].mean(0)
    return {k: _unit(x).astype(np.float32) for k, x in out.items()}


def contrast(layer_vectors: np.ndarray, alpha: float, layer: int) -> np.ndarray:
    """``[N, d]`` L2-normalised ``p_L + alpha (p_L - p_layer)`` (``layer`` 1-based, below L)."""
    v = np.asarray(layer_vectors, dtype=np.float64)
    return _unit(v[-1] + alpha * (v[-1] - v[layer - 1])).astype(np.float32)


def choose_contrast(
    dev_vectors: np.ndarray, dev_quality: QualityFn, alphas: Sequence[float] = CONTRAST_ALPHAS
) -> tuple[float, int, float]:
    """``(alpha, layer, dev quality)`` of the best contrast on dev, over ``alphas`` and layers ``1..L-1``."""
    n_layers = np.asarray(dev_vectors).shape[0]
    best = (float(alphas[0]), 1, -np.inf)
    for layer in range(1, n_layers):
        for a in alphas:
            q = float(dev_quality(contrast(dev_vectors, a, layer)))
            if q > best[2]:
                best = (float(a), layer, q)
    return best


def mixing_record(
    test_vectors: np.ndarray,
    test_quality: QualityFn,
    dev_vectors: np.ndarray | None = None,
    dev_quality: QualityFn | None = None,
) -> dict:
    """The layer-mixing row of one model on one benchmark: each fixed mix's test quality and
    the contrast chosen on dev (``None`` without a dev split), with its gain over ``final``."""
    out: dict = {name: float(test_quality(emb)) for name, emb in mixes(test_vectors).items()}
    out["contrast"] = None
    if dev_vectors is not None and dev_quality is not None:
        a, layer, dev_q = choose_contrast(dev_vectors, dev_quality)
        out["contrast"] = {
            "alpha": a,
            "layer": layer,
            "dev_quality": dev_q,
            "dev_final": float(dev_quality(mixes(dev_vectors)["final"])),
            "quality": float(test_quality(contrast(test_vectors, a, layer))),
        }
    return out
