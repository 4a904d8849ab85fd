import numpy as np
import pytest

from leap.core import metrics


def test_exit_rate_cumulative_expected():
    e = np.array([3, 3, 4, 6, 6, 5])
    assert metrics.exit_rate(e, 6) == pytest.approx(4 / 6)
    assert metrics.cumulative_exit(e, 6).tolist() == pytest.approx([0, 0, 2 / 6, 3 / 6, 4 / 6, 1.0])
    assert metrics.expected_exit_layer(e) == pytest.approx(27 / 6)
    assert metrics.layer_reduction(e, 6) == pytest.approx(6 / 4.5)
    assert metrics.exit_distribution(e, 6).sum() == pytest.approx(1.0)


def test_exit_layers_out_of_range():
    with pytest.raises(ValueError, match="1..6"):
        metrics.exit_rate(np.array([0, 2]), 6)


def _layers_from_angles(angles):
    """[L, N=1, 2] unit vectors at the given angles (radians)."""
    return np.stack([[[np.cos(a), np.sin(a)]] for a in angles])


def test_similarity_to_final_and_stability_by_hand():
    v = _layers_from_angles([np.pi / 2, np.pi / 3, 0.0])
    sim = metrics.similarity_to_final(v)
    assert sim == pytest.approx([0.0, 0.5, 1.0], abs=1e-12)
    stab = metrics.inter_layer_stability(v)
    assert np.isnan(stab[0])
    assert stab[1:] == pytest.approx([np.cos(np.pi / 6), 0.5], abs=1e-12)


def test_contraction_ratio_geometric_steps():
    # points on a line with steps 1, 0.5, 0.25: gamma = 0.5 at layers 2 and 3
    pts = np.array([0.0, 1.0, 1.5, 1.75])
    v = np.stack([[[1.0, p]] for p in pts])
    # the ratio is computed on normalised vectors; check against a direct computation
    u = v / np.linalg.norm(v, axis=-1, keepdims=True)
    steps = np.linalg.norm(u[1:] - u[:-1], axis=-1)[:, 0]
    r = metrics.contraction_ratios(v)
    assert np.isnan(r[0]) and np.isnan(r[-1])
    assert r[1:3] == pytest.approx([steps[1] / steps[0], steps[2] / steps[1]])
    assert metrics.median_contraction(v) == pytest.approx(np.median(r[1:3]))


def test_final_aligned_displacement_points_toward_final():
    v = _layers_from_angles([1.0, 0.6, 0.3, 0.0])
    d = metrics.final_aligned_displacement(v)
    assert np.all(d[:-1] > 0.9) and np.isnan(d[-1])


def test_knn_known_neighbours():
    # four points on a circle: neighbours by angle are known
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert metrics.knn_indices(x, 1)[:, 0].tolist() == [1, 0, 3, 2]


def test_nn_at_k_identical_and_scrambled():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8))
    assert metrics.nn_at_k(x, x, k=10) == 1.0
    assert metrics.nn_failure_rate(x, x, k=10) == 0.0
    # 6 clusters of 6 points; in the "layer" each cluster holds one point of every
    # final cluster, so no layer neighbour (k=5) is a final neighbour
    centres = 50 * np.eye(6)
    final = np.stack([centres[i // 6] for i in range(36)]) + rng.normal(scale=0.1, size=(36, 6))
    layer = np.stack([centres[i % 6] for i in range(36)]) + rng.normal(scale=0.1, size=(36, 6))
    assert metrics.nn_at_k(layer, final, k=5) == 0.0
    assert metrics.nn_failure_rate(layer, final, k=5) == 1.0


def test_nn_overlap_by_hand():
    final = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [-1.0, 0.05]])
    layer = np.array([[1.0, 0.0], [0.0, 1.0], [0.99, 0.14], [-1.0, 0.05]])
    # k=1: final NN of 0 is 1; layer NN of 0 is 2 -> overlap 0 for sample 0
    ov = metrics.nn_overlap(layer, final, k=1)
    assert ov[0] == 0.0
    assert ov.shape == (4,)


def test_nn_per_layer_last_is_one():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(3, 20, 5))
    nn, fail = metrics.nn_at_k_per_layer(v, k=5)
    assert nn[-1] == 1.0 and fail[-1] == 0.0
