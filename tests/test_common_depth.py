"""Common-depth scoring: the vectorised similarities equal a plain per-pair loop; the layer
stack the exit loop keeps equals the one built from a full pass (compact on and off, any
batch size, with maps); the frontier's common-depth point equals scoring the served stacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from leap.core import common_depth
from leap.core.early_exit import exit_forward, simulate_exit
from leap.core.exit_config import ExitConfig
from leap.core.layer_maps import fit_layer_maps
from leap.errors import LeapError
from leap.serving.model import load_exit_model
from leap.workflow import frontier


def random_stack(rng: np.random.Generator, n: int, L: int = 6, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    layers = rng.integers(3, L + 1, n)
    unit = rng.normal(size=(L, n, d))
    unit /= np.linalg.norm(unit, axis=-1, keepdims=True)
    return common_depth.stack_from_layer_vectors(unit, layers), layers


def test_similarities_equal_a_plain_loop_over_pairs():
    rng = np.random.default_rng(0)
    a, la = random_stack(rng, 9)
    b, lb = random_stack(rng, 13)
    want = np.array([[a[i, min(la[i], lb[j]) - 1] @ b[j, min(la[i], lb[j]) - 1] for j in range(13)] for i in range(9)])
    assert np.abs(common_depth.similarity(a, la, b, lb) - want).max() < 1e-6
    i1, i2 = rng.integers(0, 9, 20), rng.integers(0, 9, 20)
    pairs = [a[i, min(la[i], la[j]) - 1] @ a[j, min(la[i], la[j]) - 1] for i, j in zip(i1, i2)]
    assert np.abs(common_depth.pair_similarity(a, la, i1, i2) - pairs).max() < 1e-6


def test_stack_keeps_layers_up_to_the_exit_only():
    rng = np.random.default_rng(1)
    stack, layers = random_stack(rng, 5)
    for i, l in enumerate(layers):
        assert np.allclose(np.linalg.norm(stack[i, :l], axis=-1), 1.0) and not stack[i, l:].any()


def test_bad_stacks_are_refused_with_their_shapes():
    with pytest.raises(LeapError, match=r"layer stack \[N, L, d\]"):
        common_depth.pair_similarity(np.zeros((3, 4)), np.ones(3), [0], [1])
    with pytest.raises(LeapError, match="exit layers must lie in 1..6"):
        common_depth.similarity(np.zeros((2, 6, 4)), np.array([1, 7]), np.zeros((2, 6, 4)), np.array([1, 2]))


def split_theta(model, sentences, l_min: int) -> float:
    v = model.layer_embeddings(sentences)
    vals = np.sort(F.cosine_similarity(v[l_min - 1], v[l_min - 2], dim=-1).numpy())
    n = len(vals)
    i = max(range(n // 4, 3 * n // 4), key=lambda j: vals[j] - vals[j - 1])
    return float((vals[i] + vals[i - 1]) / 2)


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_fast_path_layer_stack_equals_the_full_pass(tiny_models, sentences, arch):
    model = load_exit_model(tiny_models[arch], exit=ExitConfig(strategy="none"), device="cpu")
    v = model.layer_embeddings(sentences)
    model.exit_module.layer_maps = fit_layer_maps(v, ridge=0.1)
    cfg = ExitConfig(theta=split_theta(model, sentences, 3), min_layer=3).resolve(model.num_layers)
    ev = model.embed_vectors(v)
    _, ref_layers = simulate_exit(v, cfg, embed_vectors=ev)
    ref = common_depth.stack_from_layer_vectors(F.normalize(ev, dim=-1).numpy(), ref_layers)
    ref[:, : cfg.first_pooled_layer() - 1] = 0.0  # layers before the rule's first read are never pooled
    assert len(set(ref_layers.tolist())) > 1
    for bs in (1, 7, 64):
        stack, layers = model.encode_with_layer_stack(sentences, batch_size=bs, exit=cfg)
        assert (layers == ref_layers).all() and np.abs(stack - ref).max() < 1e-5
    emb, layers = model.encode_with_exit_layers(sentences, exit=cfg)
    assert np.abs(stack[np.arange(len(layers)), layers - 1] - emb).max() < 1e-5
    feats = model.features(sentences)
    hf = model.exit_module.model
    outs = [
        exit_forward(
            hf, feats["input_ids"], feats["attention_mask"], cfg, maps=model.layer_maps, compact=c, keep_layers=True
        )
        for c in (True, False)
    ]
    assert torch.allclose(outs[0].layer_stack, outs[1].layer_stack, atol=1e-5)


def test_monitor_only_keeps_every_layer_from_the_first_read(tiny_models, sentences):
    model = load_exit_model(tiny_models["bert"], device="cpu")
    stack, layers = model.encode_with_layer_stack(
        sentences, exit=ExitConfig(theta=-1.0, min_layer=3, monitor_only=True)
    )
    assert (layers == 6).all()
    assert not stack[:, :1].any() and np.allclose(np.linalg.norm(stack[:, 1:], axis=-1), 1.0, atol=1e-5)


def test_frontier_common_depth_point_equals_scoring_the_served_stacks(tiny_models, sentences):
    model = load_exit_model(tiny_models["distilbert"], exit=ExitConfig(strategy="none"), device="cpu")
    n = len(sentences)
    rng = np.random.default_rng(0)
    i1, i2 = rng.integers(0, n, 40), rng.integers(0, n, 40)
    gold = rng.random(40)
    v = model.layer_embeddings(sentences)
    theta = split_theta(model, sentences, 3)
    base = ExitConfig(min_layer=3).resolve(6)
    (point,) = frontier.common_depth_points(v, v, base, frontier.pair_spearman_common_depth(i1, i2, gold), [theta])
    stack, layers = model.encode_with_layer_stack(sentences, exit=ExitConfig(theta=theta, min_layer=3))
    served = spearmanr(common_depth.pair_similarity(stack, layers, i1, i2), gold).statistic
    assert point.rule == "common_depth" and 0 < point.exit_rate < 1
    assert abs(point.quality - served) < 1e-6 and abs(point.mean_exit_layer - layers.mean()) < 1e-9
