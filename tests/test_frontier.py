"""The frontier: truncation from one full pass equals encoding with every sample stopped at
the layer, the interpolation of truncation quality, and the exit advantage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leap.core.exit_config import ExitConfig
from leap.workflow.frontier import (
    FrontierPoint,
    exit_advantage,
    exit_point,
    oracle_layers,
    oracle_points,
    pair_spearman,
    sweep_points,
    truncation_points,
    truncation_quality_at,
)


def trunc(qualities: list[float]) -> list[FrontierPoint]:
    L = len(qualities)
    return [FrontierPoint("truncation", l, 1.0, float(l), L / l, q) for l, q in enumerate(qualities, start=1)]


def test_truncation_quality_is_linear_between_neighbouring_layers():
    t = trunc([0.2, 0.4, 0.5, 0.9])
    assert truncation_quality_at(2.0, t) == pytest.approx(0.4)
    assert truncation_quality_at(2.5, t) == pytest.approx(0.45)
    assert truncation_quality_at(3.25, t) == pytest.approx(0.6)
    assert truncation_quality_at(0.5, t) == pytest.approx(0.2)  # clamped at the ends
    assert truncation_quality_at(9.0, t) == pytest.approx(0.9)


def test_exit_advantage_is_quality_minus_truncation_at_the_same_depth():
    t = trunc([0.2, 0.4, 0.5, 0.9])
    p = FrontierPoint("convergence", 0.9, 0.5, 3.5, 4 / 3.5, 0.75)
    assert exit_advantage(p, t) == pytest.approx(0.75 - 0.7)
    worse = FrontierPoint("convergence", 0.9, 0.5, 3.5, 4 / 3.5, 0.6)
    assert exit_advantage(worse, t) == pytest.approx(-0.1)


def test_truncation_from_one_pass_equals_encoding_stopped_at_each_layer(tiny_models):
    """The frontier's truncation points (from the pooled vectors of one full pass) are the
    scores of the model served with every sample stopped at layer l."""
    from leap.serving.model import load_exit_model
    from leap.workflow.data import demo_pairs
    from leap.workflow.evaluate import pair_index

    model = load_exit_model(tiny_models["mpnet"], exit=ExitConfig(strategy="none"), device="cpu")
    df = demo_pairs(40)
    sents, i1, i2 = pair_index(df)
    q = pair_spearman(i1, i2, df["score"].to_numpy(float))
    points = truncation_points(model.layer_embeddings(sents), q)
    for p in points[:-1]:
        emb, layers = model.encode_with_exit_layers(sents, exit=ExitConfig(strategy="truncate", min_layer=p.setting))
        assert (layers == p.setting).all()
        assert p.quality == pytest.approx(q(emb), abs=1e-6)
    assert points[-1].quality == pytest.approx(q(model.encode(sents)), abs=1e-6)


def test_exit_point_at_theta_minus_one_is_truncation_at_l_min():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(4, 30, 8, generator=g)
    gold = np.random.default_rng(0).random(15)
    q = pair_spearman(np.arange(0, 30, 2), np.arange(1, 30, 2), gold)
    t = truncation_points(v, q)
    p, layers = exit_point(v, v, ExitConfig(theta=-1.0, min_layer=2), q)
    assert (layers == 2).all() and p.exit_rate == 1.0 and p.mean_exit_layer == 2.0
    assert exit_advantage(p, t) == pytest.approx(0.0, abs=1e-12)
    pts = sweep_points(v, v, ExitConfig(min_layer=2), q, thetas=(-1.0, 1.0), pabee=((0.99, 2),))
    assert [p.rule for p in pts] == ["convergence", "convergence", "pabee"]
    assert pts[1].exit_rate == 0.0 and pts[1].quality == pytest.approx(t[-1].quality)


def test_advantage_is_selection_gain_plus_mixing():
    from leap.workflow.frontier import decompose_advantage

    g = torch.Generator().manual_seed(1)
    v = torch.randn(5, 40, 8, generator=g)
    gold = np.random.default_rng(1).random(20)
    q = pair_spearman(np.arange(0, 40, 2), np.arange(1, 40, 2), gold)
    t = truncation_points(v, q)
    theta = float(torch.nn.functional.cosine_similarity(v[2], v[1], dim=-1).median())
    d = decompose_advantage(v, v, ExitConfig(theta=theta, min_layer=3), q, t)
    assert d["selection_gain"] + d["mixing"] == pytest.approx(d["exit_advantage"])
    p, _ = exit_point(v, v, ExitConfig(theta=theta, min_layer=3), q)
    assert d["exit_advantage"] == pytest.approx(exit_advantage(p, t))
    # with every sample at one layer there is nothing to select or mix
    flat = decompose_advantage(v, v, ExitConfig(theta=-1.0, min_layer=3), q, t)
    assert flat["selection_gain"] == pytest.approx(0.0) and flat["mixing"] == pytest.approx(0.0, abs=1e-12)


def test_summary_picks_the_operating_point_on_dev_and_reports_it_on_test():
    """The dev split chooses (best dev advantage among points at the bar); the test split only
    reports. Point 1 is best on test but fails the bar on dev; point 2 wins on dev."""
    from leap.workflow.frontier_tables import dev_chosen_point

    def point(theta, rate, el, adv, q=0.8):
        return {
            "rule": "convergence",
            "setting": theta,
            "exit_rate": rate,
            "mean_exit_layer": el,
            "layer_reduction": 6 / el,
            "quality": q,
            "exit_advantage": adv,
        }

    def run(dev_sweep, test_sweep):
        return {
            "stsb": {"splits": {"dev": {"frontier": {"sweep": dev_sweep}}, "test": {"frontier": {"sweep": test_sweep}}}}
        }

    dev = [point(0.8, 1.0, 3.0, 0.05), point(0.83, 0.5, 4.0, 0.04), point(0.86, 0.9, 4.0, 0.01)]
    test = [point(0.8, 1.0, 3.0, 0.0), point(0.83, 0.9, 4.0, 0.03), point(0.86, 0.85, 4.2, -0.01, q=0.7)]
    res = {"m": {0: run(dev, test), 1: run(dev, test)}}
    chosen = dev_chosen_point(res, "m")
    assert chosen["rule"] == "convergence 0.86" and chosen["dev_exit_advantage"] == pytest.approx(0.01)
    assert chosen["exit_advantage"] == pytest.approx(-0.01) and chosen["quality"] == pytest.approx(0.7)
    assert dev_chosen_point({"m": {0: run(dev[:2], test[:2])}}, "m") is None  # nothing at the bar on dev


def test_oracle_rule_equals_a_plain_loop_over_layers():
    """The oracle stops each input at the first layer >= l_min whose returned vector has
    cosine >= tau with its own final-layer vector (maps applied: the vectors passed in)."""
    g = torch.Generator().manual_seed(0)
    L, N, d = 6, 40, 8
    final = torch.randn(N, d, generator=g)
    noise = torch.stack([torch.randn(N, d, generator=g) * (L - l) / L for l in range(1, L + 1)])
    ev = final[None] + noise  # [L, N, d], closer to the final vector with depth
    for min_layer, tau in ((3, 0.9), (2, 0.6), (5, 0.99)):
        got = oracle_layers(ev, min_layer, tau)
        want = []
        for n in range(N):
            f = ev[-1, n] / ev[-1, n].norm()
            stop = L
            for l in range(min_layer, L + 1):
                if float((ev[l - 1, n] / ev[l - 1, n].norm()) @ f) >= tau:
                    stop = l
                    break
            want.append(stop)
        assert got.tolist() == want
    assert len(set(oracle_layers(ev, 2, 0.6).tolist())) > 1  # a mix of depths, not a degenerate case


def test_oracle_points_score_the_embeddings_of_their_exit_layers():
    g = torch.Generator().manual_seed(1)
    ev = torch.randn(4, 30, 5, generator=g)
    mean_first_coord = lambda emb: float(emb[:, 0].mean())  # noqa: E731 a quality that sees which rows are used
    (p,) = oracle_points(ev, 2, mean_first_coord, taus=(0.5,))
    layers = oracle_layers(ev, 2, 0.5)
    unit = ev / ev.norm(dim=-1, keepdim=True)
    want = unit[torch.as_tensor(layers) - 1, torch.arange(30)]
    assert p.rule == "oracle" and p.setting == 0.5
    assert p.quality == pytest.approx(mean_first_coord(want.numpy()))
    assert p.mean_exit_layer == pytest.approx(layers.mean()) and p.exit_rate == pytest.approx((layers < 4).mean())


def test_the_bar_is_one_rule():
    from leap.workflow.frontier import BAR_EXIT_RATE, BAR_REDUCTION, meets_bar

    assert meets_bar(BAR_EXIT_RATE, BAR_REDUCTION)
    assert not meets_bar(BAR_EXIT_RATE - 0.01, 3.0) and not meets_bar(1.0, BAR_REDUCTION - 0.01)


def test_interleaved_timing_rotates_the_order_and_reports_every_round():
    from leap.deploy.bench import interleaved_ms

    calls = []
    paths = {n: (lambda s, b, n=n: calls.append(n)) for n in ("a", "b", "c")}
    out = interleaved_ms(paths, ["x"] * 4, batch_size=2, rounds=3)
    assert {n: len(v) for n, v in out.items()} == {"a": 3, "b": 3, "c": 3} and all(
        x >= 0 for v in out.values() for x in v
    )
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # after one warm-up call each
