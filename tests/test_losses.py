"""Each LEAP term against a plain per-sample, per-layer loop (torchtune's
vectorised-vs-manual pattern), gradient properties, schedule and config checks."""

from __future__ import annotations

import math

import pytest
import torch

from leap.errors import LeapError
from leap.losses import ABLATION_TERMS, BASELINE_TERMS, LeapLossConfig, leap_loss, uniform_layer_map


def cos(a, b):
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def margin(gap, cfg: LeapLossConfig):
    x = cfg.exit_slope * gap
    if cfg.exit_margin == "softplus":
        return math.log1p(math.exp(x)) / cfg.exit_slope
    return sigmoid(x)


def reference(student, teacher, cfg: LeapLossConfig, progress, P=None):
    """The SPEC formulas, one sample and one layer at a time."""
    n_s, bsz, _ = student.shape
    n_t = max(teacher)
    proj = (lambda v: P(v)) if P is not None else (lambda v: v)
    pi = cfg.layer_map or [int(math.floor(l * n_t / n_s + 0.5)) for l in range(1, n_s + 1)]
    w = cfg.layer_weights or [1.0 if l >= cfg.min_layer else 0.1 for l in range(1, n_s + 1)]
    s = lambda l, b: student[l - 1, b]  # noqa: E731
    final = sum(1 - cos(proj(s(n_s, b)), teacher[n_t][b]) for b in range(bsz)) / bsz
    inter = sum(sum(1 - cos(proj(s(l, b)), teacher[pi[l - 1]][b]) for b in range(bsz)) / bsz for l in range(1, n_s + 1)) / n_s
    exit_t = sum(w[l - 1] * sum(margin(cfg.tau - cos(proj(s(l, b)), teacher[n_t][b]), cfg) for b in range(bsz)) / bsz
                 for l in range(1, n_s + 1)) / n_s
    if cfg.exit_s_target == "next":  # layer l toward layer l+1, weighted by w_(l+1)
        exit_s = sum(w[l] * sum(margin(cfg.tau - cos(s(l, b), s(l + 1, b)), cfg) for b in range(bsz)) / bsz
                     for l in range(1, n_s)) / (n_s - 1)
    else:
        exit_s = sum(w[l - 1] * sum(margin(cfg.tau - cos(s(l, b), s(n_s, b)), cfg) for b in range(bsz)) / bsz
                     for l in range(1, n_s)) / (n_s - 1)
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
    late = sum(sum(math.sqrt(1 - cos(s(l, b), s(n_s, b)) + 1e-8) for b in range(bsz)) / bsz for l in late_layers) / len(late_layers)
    redund = 0.0
    for l in range(1, n_s):
        for b in range(bsz):
            u, v = s(l + 1, b) / s(l + 1, b).norm(), s(l, b) / s(l, b).norm()
            redund += min(float((u - v).norm()), cfg.redund_margin)
    redund = -redund / (bsz * (n_s - 1))
    out = {"final": final, "inter": inter, "exit_t": exit_t, "exit_s": exit_s, "exit": exit_t + bs * exit_s,
           "contrast": contrast, "late": late, "redund": redund}
    on = set(cfg.terms)
    for k in list(out):
        base = "exit" if k.startswith("exit") else k
        if base not in on:
            out[k] = 0.0
    wts = {"final": 1, "inter": cfg.alpha, "exit": cfg.beta, "contrast": cfg.delta, "late": cfg.eps, "redund": cfg.gamma}
    out["total"] = sum(wts[k] * out[k] for k in wts)
    return out


def make(n_s, bsz, d_s, n_t, d_t, seed=0, near=False):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(n_s, bsz, d_s, generator=g, dtype=torch.float64)
    if near:  # layers close to the final one, so margins sit near tau
        student = student[-1:] + 0.05 * student
    teacher = {l: torch.randn(bsz, d_t, generator=g, dtype=torch.float64) for l in range(1, n_t + 1)}
    return student, teacher


CASES = [
    # n_s, bsz, d_s, n_t, d_t, projection, config
    (6, 5, 8, 12, 8, False, LeapLossConfig(min_layer=3)),
    (12, 4, 6, 24, 10, True, LeapLossConfig()),
    (6, 7, 8, 12, 16, True, LeapLossConfig(min_layer=3, exit_slope=2.0, progressive=None, tau=0.9)),
    (4, 3, 5, 4, 5, False, LeapLossConfig(min_layer=2, layer_weights=(0.5, 1, 2, 3), layer_map=(1, 1, 3, 4), late_layers=(2, 3))),
    (6, 6, 8, 12, 8, False, LeapLossConfig(terms=BASELINE_TERMS, min_layer=3)),
    (6, 6, 8, 12, 12, True, LeapLossConfig(terms=ABLATION_TERMS["abl_inter"], min_layer=3, alpha=0.7)),
    (6, 5, 8, 12, 16, True, LeapLossConfig(min_layer=3, exit_margin="softplus", exit_slope=4.0)),
    (6, 5, 8, 12, 8, False, LeapLossConfig(min_layer=3, exit_s_target="next", layer_weights=(0.1, 0.2, 1, 2, 3, 4))),
    (6, 4, 8, 12, 8, True, LeapLossConfig(min_layer=3, exit_margin="softplus", exit_s_target="next")),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("progress", [0.0, 0.3, 0.9])
def test_terms_equal_plain_loop(case, progress):
    n_s, bsz, d_s, n_t, d_t, use_p, cfg = CASES[case]
    student, teacher = make(n_s, bsz, d_s, n_t, d_t, seed=case, near=case % 2 == 1)
    P = None
    if use_p or d_s != d_t:
        P = torch.nn.Linear(d_s, d_t, bias=False).double()
        torch.nn.init.normal_(P.weight, generator=torch.Generator().manual_seed(case))
    got = leap_loss(student, teacher, cfg, progress, projection=P)
    with torch.no_grad():
        want = reference(student, teacher, cfg, progress, P)
    for k, v in want.items():
        assert float(got[k].detach()) == pytest.approx(v, rel=1e-9, abs=1e-9), k


def test_softplus_margin_keeps_its_gradient_far_below_tau():
    """The paper's sigmoid margin saturates far below tau (no pull); the softplus hinge does not."""
    cosv = torch.tensor([0.2, 0.97, 0.995], requires_grad=True)
    grads = {}
    for kind in ("sigmoid", "softplus"):
        cfg = LeapLossConfig(exit_margin=kind)
        from leap.losses import soft_margin
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
    out = leap_loss(student, teacher, LeapLossConfig(terms=("final",), min_layer=3), 0.5)
    for k in ("inter", "exit", "exit_t", "exit_s", "contrast", "late", "redund"):
        assert float(out[k]) == 0.0
    assert float(out["total"]) == float(out["final"])


def test_exit_s_and_late_send_no_gradient_into_final_layer():
    student, teacher = make(6, 4, 8, 12, 8, near=True)
    student.requires_grad_(True)
    for term, cfg in (("exit_s", LeapLossConfig(min_layer=3)), ("late", LeapLossConfig(min_layer=3))):
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
    out = leap_loss(student, teacher, LeapLossConfig(min_layer=1, terms=("exit",), progressive=None), 1.0)
    out["exit_s"].backward()
    assert student.grad[:-1].abs().sum() > 0


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
)
def test_bad_config(kwargs, match):
    with pytest.raises(LeapError, match=match):
        LeapLossConfig(**kwargs)


def test_layer_map_outside_teacher():
    student, teacher = make(6, 3, 8, 12, 8)
    del teacher[4]
    with pytest.raises(LeapError, match=r"needs teacher layers \[4\]"):
        leap_loss(student, teacher, LeapLossConfig(min_layer=3), 0.5)


def test_width_mismatch_needs_projection():
    student, teacher = make(6, 3, 8, 12, 16)
    with pytest.raises(LeapError, match="pass a projection"):
        leap_loss(student, teacher, LeapLossConfig(min_layer=3), 0.5)
