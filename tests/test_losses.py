"""Each LEAP term against a plain per-sample, per-layer loop (torchtune's
vectorised-vs-manual pattern), gradient properties, schedule and config checks."""

from __future__ import annotations

import math

import pytest
import torch

from leap.errors import LeapError
from leap.training.config import LeapLossConfig, uniform_layer_map
from leap.training.heads import TrainableLayerMaps
from leap.training.losses.leap_loss import leap_loss
from leap.training.losses.terms import soft_margin
from leap.workflow.variants import ABLATION_TERMS, BASELINE_TERMS


def cos(a, b):
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def margin(gap, cfg: LeapLossConfig):
    x = cfg.exit_slope * gap
    if cfg.exit_margin == "softplus":
        return math.log1p(math.exp(x)) / cfg.exit_slope
    return sigmoid(x)


def reference(student, teacher, cfg: LeapLossConfig, progress, P=None, M=None):
    """The SPEC formulas, one sample and one layer at a time (``M``: per-layer maps)."""
    n_s, bsz, _ = student.shape
    n_t = max(teacher)
    mapped = (lambda l, v: M.layers[l - 1](v) if l < n_s else v) if M is not None else (lambda l, v: v)
    projv = (lambda v: P(v)) if P is not None else (lambda v: v)
    proj_l = lambda l, v: projv(mapped(l, v))  # noqa: E731
    pi = cfg.layer_map or [int(math.floor(l * n_t / n_s + 0.5)) for l in range(1, n_s + 1)]
    w = cfg.layer_weights or [1.0 if l >= cfg.focus_layer else 0.1 for l in range(1, n_s + 1)]
    s = lambda l, b: student[l - 1, b]  # noqa: E731
    final = sum(1 - cos(proj_l(n_s, s(n_s, b)), teacher[n_t][b]) for b in range(bsz)) / bsz
    inter = (
        sum(
            sum(1 - cos(proj_l(l, s(l, b)), teacher[pi[l - 1]][b]) for b in range(bsz)) / bsz for l in range(1, n_s + 1)
        )
        / n_s
    )
    exit_t = (
        sum(
            w[l - 1] * sum(margin(cfg.tau - cos(proj_l(l, s(l, b)), teacher[n_t][b]), cfg) for b in range(bsz)) / bsz
            for l in range(1, n_s + 1)
        )
        / n_s
    )
    if cfg.exit_s_target == "next":  # layer l toward layer l+1, weighted by w_(l+1)
        exit_s = sum(
            w[l] * sum(margin(cfg.tau - cos(s(l, b), s(l + 1, b)), cfg) for b in range(bsz)) / bsz
            for l in range(1, n_s)
        ) / (n_s - 1)
    else:
        exit_s = sum(
            w[l - 1] * sum(margin(cfg.tau - cos(s(l, b), s(n_s, b)), cfg) for b in range(bsz)) / bsz
            for l in range(1, n_s)
        ) / (n_s - 1)
    if cfg.progressive is None:
        bs = cfg.beta_s
    else:
        a, e = cfg.progressive
        bs = 0.0 if progress < a else cfg.beta_s if progress >= e else cfg.beta_s * (progress - a) / (e - a)
    contrast = 0.0
    for i in range(bsz):
        js = [j for j in range(bsz) if j != i]
        ls = [cos(s(n_s, i), s(n_s, j)) / cfg.tau_c for j in js]
        lt = [cos(teacher[n_t][i], teacher[n_t][j]) / cfg.tau_c for j in js]
        zs, zt = math.log(sum(math.exp(x) for x in ls)), math.log(sum(math.exp(x) for x in lt))
        contrast += sum(math.exp(x - zs) * ((x - zs) - (y - zt)) for x, y in zip(ls, lt))
    contrast /= bsz
    late_layers = cfg.late_layers or list(range(max(1, n_s - 3), n_s))
    late = sum(sum(math.sqrt(1 - cos(s(l, b), s(n_s, b)) + 1e-8) for b in range(bsz)) / bsz for l in late_layers) / len(
        late_layers
    )
    redund = 0.0
    for l in range(1, n_s):
        for b in range(bsz):
            u, v = s(l + 1, b) / s(l + 1, b).norm(), s(l, b) / s(l, b).norm()
            redund += min(float((u - v).norm()), cfg.redund_margin)
    redund = -redund / (bsz * (n_s - 1))
    exit_layers = list(cfg.cross_layers) if cfg.cross_layers else list(range(max(1, cfg.focus_layer - 1), n_s))
    depth = sum(
        w[l - 1] * sum(1 - cos(mapped(l, s(l, b)), s(n_s, b)) for b in range(bsz)) / bsz for l in exit_layers
    ) / len(exit_layers)
    depths = [*exit_layers, n_s]
    cross_terms = []
    for a_i, la in enumerate(depths):
        for lb in depths[a_i:]:
            if la == lb == n_s:
                continue
            err = [
                (cos(mapped(la, s(la, i)), mapped(lb, s(lb, j))) - cos(s(n_s, i), s(n_s, j))) ** 2
                for i in range(bsz)
                for j in range(bsz)
                if i != j
            ]
            cross_terms.append(sum(err) / len(err))
    cross = sum(cross_terms) / len(cross_terms)
    out = {
        "final": final,
        "inter": inter,
        "exit_t": exit_t,
        "exit_s": exit_s,
        "exit": exit_t + bs * exit_s,
        "contrast": contrast,
        "late": late,
        "redund": redund,
        "depth": depth,
        "cross": cross,
    }
    on = set(cfg.terms)
    for k in list(out):
        base = "exit" if k.startswith("exit") else k
        if base not in on:
            out[k] = 0.0
    wts = {
        "final": 1,
        "inter": cfg.alpha,
        "exit": cfg.beta,
        "contrast": cfg.delta,
        "late": cfg.eps,
        "redund": cfg.gamma,
        "depth": cfg.depth_weight,
        "cross": cfg.cross_weight,
    }
    out["total"] = sum(wts[k] * out[k] for k in wts)
    return out


def make(n_s, bsz, d_s, n_t, d_t, seed=0, near=False):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(n_s, bsz, d_s, generator=g, dtype=torch.float64)
    if near:  # layers close to the final one, so margins sit near tau
        student = student[-1:] + 0.05 * student
    teacher = {l: torch.randn(bsz, d_t, generator=g, dtype=torch.float64) for l in range(1, n_t + 1)}
    return student, teacher


ALL = ("final", "inter", "exit", "contrast", "late", "redund", "depth", "cross")
CASES = [
    # n_s, bsz, d_s, n_t, d_t, projection, config
    (6, 5, 8, 12, 8, False, LeapLossConfig(focus_layer=3)),
    (12, 4, 6, 24, 10, True, LeapLossConfig()),
    (6, 7, 8, 12, 16, True, LeapLossConfig(focus_layer=3, exit_slope=2.0, progressive=None, tau=0.9)),
    (
        4,
        3,
        5,
        4,
        5,
        False,
        LeapLossConfig(focus_layer=2, layer_weights=(0.5, 1, 2, 3), layer_map=(1, 1, 3, 4), late_layers=(2, 3)),
    ),
    (6, 6, 8, 12, 8, False, LeapLossConfig(terms=BASELINE_TERMS, focus_layer=3)),
    (6, 6, 8, 12, 12, True, LeapLossConfig(terms=ABLATION_TERMS["abl_inter"], focus_layer=3, alpha=0.7)),
    (6, 5, 8, 12, 16, True, LeapLossConfig(focus_layer=3, exit_margin="softplus", exit_slope=4.0)),
    (6, 5, 8, 12, 8, False, LeapLossConfig(focus_layer=3, exit_s_target="next", layer_weights=(0.1, 0.2, 1, 2, 3, 4))),
    (6, 4, 8, 12, 8, True, LeapLossConfig(focus_layer=3, exit_margin="softplus", exit_s_target="next")),
    (6, 5, 8, 12, 8, True, LeapLossConfig(focus_layer=3, terms=ALL, cross_weight=3.0)),
    (6, 4, 8, 12, 16, True, LeapLossConfig(focus_layer=2, terms=("final", "depth", "cross"), cross_layers=(2, 4))),
]
CASE_IDS = [
    "paper_6_layers",
    "paper_12_layers",
    "slope2_no_ramp",
    "custom_maps_and_weights",
    "baseline_terms",
    "ablation_inter",
    "softplus_margin",
    "exit_s_next",
    "softplus_next",
    "all_terms_with_maps",
    "depth_cross_chosen_layers",
]
WITH_MAPS = {9, 10}


@pytest.mark.parametrize("case", range(len(CASES)), ids=CASE_IDS)
@pytest.mark.parametrize("progress", [0.0, 0.3, 0.9], ids=["start", "ramp", "end"])
def test_terms_equal_plain_loop(case, progress):
    n_s, bsz, d_s, n_t, d_t, use_p, cfg = CASES[case]
    student, teacher = make(n_s, bsz, d_s, n_t, d_t, seed=case, near=case % 2 == 1)
    P = M = None
    if use_p or d_s != d_t:
        P = torch.nn.Linear(d_s, d_t, bias=False).double()
        torch.nn.init.normal_(P.weight, generator=torch.Generator().manual_seed(case))
    if case in WITH_MAPS:
        M = TrainableLayerMaps(n_s, d_s).double()
        with torch.no_grad():
            for m in M.layers:
                m.weight.add_(
                    0.2 * torch.randn(d_s, d_s, generator=torch.Generator().manual_seed(case), dtype=torch.float64)
                )
                m.bias.normal_(generator=torch.Generator().manual_seed(case + 1))
    got = leap_loss(student, teacher, cfg, progress, projection=P, maps=M)
    with torch.no_grad():
        want = reference(student, teacher, cfg, progress, P, M)
    for k, v in want.items():
        assert float(got[k].detach()) == pytest.approx(v, rel=1e-9, abs=1e-9), k


def test_softplus_margin_keeps_its_gradient_far_below_tau():
    """The paper's sigmoid margin saturates far below tau (no pull); the softplus hinge does not."""
    cosv = torch.tensor([0.2, 0.97, 0.995], requires_grad=True)
    grads = {}
    for kind in ("sigmoid", "softplus"):
        cfg = LeapLossConfig(exit_margin=kind)
        (g,) = torch.autograd.grad(soft_margin(cfg.tau - cosv, cfg.exit_slope, kind).sum(), cosv)
        grads[kind] = g
    assert abs(float(grads["sigmoid"][0])) < 0.01  # saturated: sigmoid'(8) * 10 ~ 0.003
    assert float(grads["softplus"][0]) == pytest.approx(-1.0, abs=1e-3)  # full pull far from tau
    assert abs(float(grads["softplus"][2])) < 0.5  # above tau the hinge lets go


def test_bad_exit_options_are_named():
    with pytest.raises(LeapError, match="exit_margin"):
        LeapLossConfig(exit_margin="hinge")
    with pytest.raises(LeapError, match="exit_s_target"):
        LeapLossConfig(exit_s_target="previous")


def test_off_terms_are_exactly_zero():
    student, teacher = make(6, 4, 8, 12, 8)
    out = leap_loss(student, teacher, LeapLossConfig(terms=("final",), focus_layer=3), 0.5)
    for k in ("inter", "exit", "exit_t", "exit_s", "contrast", "late", "redund", "depth", "cross"):
        assert float(out[k]) == 0.0
    assert float(out["total"]) == float(out["final"])


def test_exit_s_and_late_send_no_gradient_into_final_layer():
    student, teacher = make(6, 4, 8, 12, 8, near=True)
    student.requires_grad_(True)
    for term, cfg in (("exit_s", LeapLossConfig(focus_layer=3)), ("late", LeapLossConfig(focus_layer=3))):
        student.grad = None
        leap_loss(student, teacher, cfg, 1.0)[term].backward()
        assert torch.all(student.grad[-1] == 0), term
        assert student.grad[:-1].abs().sum() > 0, term


def test_soft_margin_has_gradient_above_tau():
    """cos above tau still pulls (the sigmoid margin is soft, not a hinge)."""
    torch.manual_seed(0)
    final = torch.randn(1, 3, 8, dtype=torch.float64)
    student = torch.cat([final + 0.001 * torch.randn(5, 3, 8, dtype=torch.float64), final])  # cos ~ 1 > tau
    student.requires_grad_(True)
    teacher = {l: torch.randn(3, 8, dtype=torch.float64) for l in range(1, 13)}
    out = leap_loss(student, teacher, LeapLossConfig(focus_layer=1, terms=("exit",), progressive=None), 1.0)
    out["exit_s"].backward()
    assert student.grad[:-1].abs().sum() > 0


def test_depth_and_cross_send_no_gradient_into_the_final_target():
    """L_depth and L_cross pull the exit layers (and their maps) toward the final layer; the
    final layer itself is the target (stop-gradient) and is not pulled back."""
    student, teacher = make(6, 4, 8, 12, 8)
    student.requires_grad_(True)
    maps = TrainableLayerMaps(6, 8).double()
    for term in ("depth", "cross"):
        student.grad = None
        cfg = LeapLossConfig(focus_layer=3, terms=(term,))
        leap_loss(student, teacher, cfg, 1.0, maps=maps)[term].backward()
        assert student.grad[:-1].abs().sum() > 0, term
    # cross at the last layer alone compares full depth with itself: nothing to learn
    cfg = LeapLossConfig(terms=("cross",), cross_layers=(5,))
    assert float(leap_loss(student, teacher, cfg, 1.0)["cross"]) > 0


def test_cross_is_zero_when_every_depth_scores_like_full_depth():
    final = torch.randn(1, 5, 8, dtype=torch.float64)
    student = final.expand(6, 5, 8).clone() * torch.arange(1, 7, dtype=torch.float64)[:, None, None]  # same directions
    out = leap_loss(
        student,
        {12: torch.randn(5, 8, dtype=torch.float64)},
        LeapLossConfig(focus_layer=3, terms=("depth", "cross")),
        1.0,
    )
    assert float(out["cross"]) == pytest.approx(0.0, abs=1e-12) and float(out["depth"]) == pytest.approx(0.0, abs=1e-12)


def test_progressive_schedule():
    cfg = LeapLossConfig()
    assert [cfg.beta_s_at(p) for p in (0.0, 0.09, 0.1, 0.35, 0.6, 1.0)] == pytest.approx([0, 0, 0, 0.35, 0.7, 0.7])
    assert LeapLossConfig(progressive=None).beta_s_at(0.0) == 0.7


def test_uniform_layer_map():
    assert uniform_layer_map(12, 24) == [2 * l for l in range(1, 13)]
    assert uniform_layer_map(6, 12) == [2, 4, 6, 8, 10, 12]
    assert uniform_layer_map(4, 6) == [2, 3, 5, 6]  # 1.5 rounds half up


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": -0.1}, "beta must be >= 0"),
        ({"tau": 0.0}, r"tau must lie in \(0, 1\]"),
        ({"tau": 1.2}, r"tau must lie in \(0, 1\]"),
        ({"terms": ("final", "magic")}, "unknown loss terms"),
        ({"layer_weights": (1, -1)}, "layer_weights must be >= 0"),
        ({"progressive": (0.7, 0.2)}, "progressive"),
    ],
    ids=["negative_beta", "tau_0", "tau_above_1", "unknown_term", "negative_weight", "ramp_backwards"],
)
def test_bad_config_is_refused_with_the_key(kwargs, match):
    with pytest.raises(LeapError, match=match):
        LeapLossConfig(**kwargs)


def test_layer_map_outside_teacher():
    student, teacher = make(6, 3, 8, 12, 8)
    del teacher[4]
    with pytest.raises(LeapError, match=r"needs teacher layers \[4\]"):
        leap_loss(student, teacher, LeapLossConfig(focus_layer=3), 0.5)


def test_width_mismatch_needs_projection():
    student, teacher = make(6, 3, 8, 12, 16)
    with pytest.raises(LeapError, match="pass a projection"):
        leap_loss(student, teacher, LeapLossConfig(focus_layer=3), 0.5)
