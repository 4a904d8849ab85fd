"""Exit and layer-geometry metrics (paper sec 4.3-4.4, App. A.1, B.5).

Pure functions over NumPy arrays. Conventions:

* ``exit_layers``: ``[N]`` 1-based exit layer of each sample; ``L`` means it ran every layer.
* ``layer_vectors``: ``[L, N, d]`` pooled (not necessarily normalised) vectors of layers
  ``1..L`` from a full pass; index ``l - 1`` holds layer ``l``.
"""

from __future__ import annotations

import numpy as np

ArrayLike = np.ndarray


DEFAULT_NN10 = 0.95
"""NN@10 agreement with full inference an exit rule must keep when the user names no budget
(``leap calibrate``, :data:`leap.deploy.calibrate.DEFAULT_BUDGET`); paper B.5."""


def _check_exit_layers(exit_layers: ArrayLike, num_layers: int) -> np.ndarray:
    e = np.asarray(exit_layers)
    if e.ndim != 1:
        raise ValueError(f"exit_layers must be 1-D, got shape {e.shape}")
    if e.size and (e.min() < 1 or e.max() > num_layers):
        raise ValueError(f"exit layers must lie in 1..{num_layers}, got {e.min()}..{e.max()}")
    return e


def exit_rate(exit_layers: ArrayLike, num_layers: int) -> float:
    """Fraction of samples that exit before the last layer (exit layer ``< L``)."""
    e = _check_exit_layers(exit_layers, num_layers)
    return float(np.mean(e < num_layers)) if e.size else 0.0


def exit_distribution(exit_layers: ArrayLike, num_layers: int) -> np.ndarray:
    """``[L]``: fraction of samples whose exit layer is ``l`` (index ``l - 1``)."""
    e = _check_exit_layers(exit_layers, num_layers)
    if not e.size:
        return np.zeros(num_layers)
    return np.bincount(e - 1, minlength=num_layers)[:num_layers] / e.size


def cumulative_exit(exit_layers: ArrayLike, num_layers: int) -> np.ndarray:
    """``[L]``: fraction of samples that have exited by layer ``l`` (exit layer ``<= l``).

    The last entry is 1 by definition (every sample has an embedding by layer ``L``).
    Paper Fig. 2: "38.9% exit by L6, 91.9% by L7".
    """
    return np.cumsum(exit_distribution(exit_layers, num_layers))


def expected_exit_layer(exit_layers: ArrayLike) -> float:
    """``E[l] = sum_l l * p_l`` (paper App. A.4): the mean exit layer."""
    e = np.asarray(exit_layers, dtype=np.float64)
    return float(e.mean()) if e.size else float("nan")


def layer_reduction(exit_layers: ArrayLike, num_layers: int) -> float:
    """Theoretical layer reduction ``L / E[l]`` (paper App. B.5)."""
    return float(num_layers / expected_exit_layer(exit_layers))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def _rowwise_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(_unit(a) * _unit(b), axis=-1)


def similarity_to_final(layer_vectors: ArrayLike) -> np.ndarray:
    """``[L]``: mean over samples of ``cos(p_l, p_L)`` (paper Table 3 / Table 9, Fig. 1).

    The last entry is 1. Exit diagnostic 1 (sec 5.2) reads this curve.
    """
    v = np.asarray(layer_vectors)
    return _rowwise_cos(v, v[-1][None]).mean(axis=1)


def inter_layer_stability(layer_vectors: ArrayLike) -> np.ndarray:
    """``[L]``: mean over samples of ``cos(p_l, p_{l-1})``; entry 0 (layer 1) is NaN.

    Layer 0 (the embedding output) is never an exit and is not part of
    ``layer_vectors``, so stability is defined from layer 2 on (paper Table 4: "L2 0.931").
    """
    v = np.asarray(layer_vectors)
    out = np.full(v.shape[0], np.nan)
    if v.shape[0] > 1:
        out[1:] = _rowwise_cos(v[1:], v[:-1]).mean(axis=1)
    return out


def contraction_ratios(layer_vectors: ArrayLike) -> np.ndarray:
    """``[L]``: contraction ratio ``gamma_l = ||p_{l+1} - p_l|| / ||p_l - p_{l-1}||`` (Eq. 2).

    Defined for layers ``2..L-1`` (entries 0 and L-1 are NaN). Our reading of "per
    layer": the median over samples of the per-sample ratio, which is robust to the
    near-zero denominators a converged sample produces. Vectors are L2-normalised first
    so that the ratio measures movement of the embedding direction, the quantity exit
    reads.
    """
    v = _unit(np.asarray(layer_vectors))
    n_layers = v.shape[0]
    out = np.full(n_layers, np.nan)
    if n_layers < 3:
        return out
    steps = np.linalg.norm(v[1:] - v[:-1], axis=-1)  # [L-1, N]: step l -> l+1 at index l-1
    num, den = steps[1:], steps[:-1]  # gamma for layers 2..L-1
    ratio = num / np.clip(den, 1e-12, None)
    out[1:-1] = np.median(ratio, axis=1)
    return out


def median_contraction(layer_vectors: ArrayLike) -> float:
    """Median over layers of :func:`contraction_ratios` (paper Fig. 4a: 0.911 for LEAP)."""
    r = contraction_ratios(layer_vectors)
    r = r[~np.isnan(r)]
    return float(np.median(r)) if r.size else float("nan")


def final_aligned_displacement(layer_vectors: ArrayLike) -> np.ndarray:
    """``[L]``: mean over samples of ``cos(p_{l+1} - p_l, p_L - p_l)`` (paper Fig. 4b, App. D.2).

    Positive values mean the step from layer ``l`` to ``l+1`` moves toward the final
    representation. Entry ``L-1`` (no step after the last layer) is NaN.
    """
    v = _unit(np.asarray(layer_vectors))
    out = np.full(v.shape[0], np.nan)
    if v.shape[0] > 1:
        step = v[1:] - v[:-1]  # [L-1, N, d]
        to_final = v[-1][None] - v[:-1]  # [L-1, N, d]
        cos = np.sum(_unit(step) * _unit(to_final), axis=-1)
        out[:-1] = cos.mean(axis=1)
    return out


def knn_indices(embeddings: ArrayLike, k: int) -> np.ndarray:
    """``[N, k]``: indices of each row's ``k`` nearest neighbours by cosine, self excluded.

    Ties are broken by index (stable sort), so results are deterministic.
    """
    x = _unit(np.asarray(embeddings))
    n = x.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k must be in 1..N-1 = 1..{n - 1}, got {k}")
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def nn_overlap(layer_embeddings: ArrayLike, final_embeddings: ArrayLike, k: int = 10) -> np.ndarray:
    """``[N]``: per-sample ``|N_k^(l)(x) & N_k^(L)(x)| / k`` (paper App. B.5)."""
    a = knn_indices(layer_embeddings, k)
    b = knn_indices(final_embeddings, k)
    return np.array([len(set(r1) & set(r2)) / k for r1, r2 in zip(a.tolist(), b.tolist())])


def nn_at_k(layer_embeddings: ArrayLike, final_embeddings: ArrayLike, k: int = 10) -> float:
    """NN@k(l): mean neighbour overlap with the final layer (paper B.5, Table 4)."""
    return float(nn_overlap(layer_embeddings, final_embeddings, k).mean())


def nn_failure_rate(
    layer_embeddings: ArrayLike, final_embeddings: ArrayLike, k: int = 10, threshold: float = 0.5
) -> float:
    """Fraction of samples whose NN@k overlap is below ``threshold`` (paper Table 8: "NN@10 Fail")."""
    return float(np.mean(nn_overlap(layer_embeddings, final_embeddings, k) < threshold))


def nn_at_k_per_layer(layer_vectors: ArrayLike, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``([L], [L])``: NN@k and NN@k failure rate of every layer against the last one."""
    v = np.asarray(layer_vectors)
    final = v[-1]
    overlaps = [nn_overlap(v[i], final, k) for i in range(v.shape[0])]
    return (
        np.array([o.mean() for o in overlaps]),
        np.array([np.mean(o < 0.5) for o in overlaps]),
    )
