"""The LEAP objective (paper Eq. 3-9; SPEC "Loss").

    L = L_final + alpha L_inter + beta L_exit + delta L_contrast + eps L_late + gamma L_redund

Inputs are pooled (not normalised) vectors: ``student [L_s, B, d_s]`` for student layers
``1..L_s`` and ``teacher {layer: [B, d_t]}`` holding at least the layers ``pi(1..L_s)``
and ``L_t`` (its largest key). ``P`` (``projection``, ``d_s -> d_t``, no bias) maps
student vectors before every student-vs-teacher cosine; cosine is scale-invariant, so
``cos(P e, t) = cos(P p, t)``. Every term is computed per sample and averaged over the
batch. Which terms are on is configuration (:attr:`LeapLossConfig.terms`), so the
baseline and every ablation row of Table 11 are configs, not code paths.

Example:
    >>> cfg = LeapLossConfig(min_layer=3)
    >>> out = leap_loss(torch.randn(6, 8, 16), {l: torch.randn(8, 16) for l in range(1, 13)}, cfg, progress=0.5)
    >>> sorted(out)  # doctest: +NORMALIZE_WHITESPACE
    ['contrast', 'exit', 'exit_s', 'exit_t', 'final', 'inter', 'late', 'redund', 'total']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from leap.errors import LeapError

TERMS = ("final", "inter", "exit", "contrast", "late", "redund")
EXIT_MARGINS = ("sigmoid", "softplus")
ALL_TERMS: tuple[str, ...] = TERMS
BASELINE_TERMS: tuple[str, ...] = ("final", "inter", "contrast")  # "our pipeline without L_exit"
# Table 11 ablation rows: (i) L_final; (ii) +L_inter; (iii) +L_contrast; (iv) +L_exit = full LEAP
ABLATION_TERMS: dict[str, tuple[str, ...]] = {
    "abl_final": ("final",),
    "abl_inter": ("final", "inter"),
    "abl_contrast": ("final", "inter", "contrast"),
    "abl_exit": ALL_TERMS,
}


@dataclass(frozen=True)
class LeapLossConfig:
    """Weights and settings of the LEAP loss. Defaults are SPEC's (the paper's where it says).

    Attributes:
        alpha, beta, delta, eps, gamma: weights of L_inter, L_exit, L_contrast, L_late, L_redund.
        tau: training exit target on cosine (0.98), in (0, 1].
        beta_s: weight of the student-internal exit term at the end of its ramp (0.7).
        tau_c: temperature of the contrastive similarity softmax (0.05).
        redund_margin: ``m`` of L_redund (0.1).
        layer_weights: ``w_l`` for l = 1..L_s; ``None`` = 1.0 for ``l >= min_layer``, 0.1 below.
        min_layer: first layer of "late layer focus" (6 in the paper; 3 for a 6-layer student).
        progressive: ``(start, end)`` fractions of training over which ``beta_s`` ramps
            from 0 to ``beta_s``; ``None`` keeps ``beta_s`` constant.
        terms: the terms that are on.
        exit_slope: slope of the soft margin ``sigmoid(slope (tau - cos))`` (paper: 10).
        exit_margin: shape of the soft margin: ``sigmoid`` (the paper's; saturates, so it
            gives almost no gradient far below ``tau``) or ``softplus``
            (``softplus(slope (tau - cos)) / slope``: the same hinge at ``tau``, gradient -> 1
            far below it). Not in the paper; see ``leap_fix`` in ``leap.train.VARIANTS``.
        exit_s_target: what L_exit_s pulls layer ``l`` toward: ``final`` (the paper's
            ``sg(e_s^(L_s))``) or ``next`` (``sg(e_s^(l+1))``, the adjacent layer the exit
            rule compares with at patience 1). Not in the paper.
        layer_map: teacher layer for each student layer 1..L_s; ``None`` = uniform
            ``pi(l) = round(l L_t / L_s)``.
        late_layers: student layers of L_late; ``None`` = the three below the last.
    """

    alpha: float = 0.3
    beta: float = 0.4
    delta: float = 0.3
    eps: float = 0.2
    gamma: float = 0.05
    tau: float = 0.98
    beta_s: float = 0.7
    tau_c: float = 0.05
    redund_margin: float = 0.1
    layer_weights: tuple[float, ...] | None = None
    min_layer: int = 6
    progressive: tuple[float, float] | None = (0.1, 0.6)
    terms: tuple[str, ...] = ALL_TERMS
    exit_slope: float = 10.0
    exit_margin: str = "sigmoid"
    exit_s_target: str = "final"
    layer_map: tuple[int, ...] | None = None
    late_layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "delta", "eps", "gamma", "beta_s", "redund_margin"):
            if getattr(self, name) < 0:
                raise LeapError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.tau <= 1:
            raise LeapError(f"tau must lie in (0, 1], got {self.tau}")
        if self.tau_c <= 0:
            raise LeapError(f"tau_c must be > 0, got {self.tau_c}")
        if self.exit_slope <= 0:
            raise LeapError(f"exit_slope must be > 0, got {self.exit_slope}")
        if self.exit_margin not in EXIT_MARGINS:
            raise LeapError(f"exit_margin must be one of {', '.join(EXIT_MARGINS)}, got {self.exit_margin!r}")
        if self.exit_s_target not in ("final", "next"):
            raise LeapError(f"exit_s_target must be final or next, got {self.exit_s_target!r}")
        unknown = set(self.terms) - set(TERMS)
        if unknown:
            raise LeapError(f"unknown loss terms {sorted(unknown)}; known: {', '.join(TERMS)}")
        if self.layer_weights is not None and any(w < 0 for w in self.layer_weights):
            raise LeapError(f"layer_weights must be >= 0, got {list(self.layer_weights)}")
        if self.progressive is not None:
            a, b = self.progressive
            if not 0 <= a <= b <= 1:
                raise LeapError(f"progressive must be (start, end) with 0 <= start <= end <= 1, got {self.progressive}")
        if self.min_layer < 1:
            raise LeapError(f"min_layer must be >= 1, got {self.min_layer}")

    # -- derived quantities ---------------------------------------------------------------
    def weights(self, n_layers: int) -> list[float]:
        """``w_l`` for l = 1..L_s (SPEC: 1.0 from ``min_layer`` on, 0.1 below)."""
        if self.layer_weights is not None:
            if len(self.layer_weights) != n_layers:
                raise LeapError(f"layer_weights has {len(self.layer_weights)} entries for a {n_layers}-layer student")
            return [float(w) for w in self.layer_weights]
        return [1.0 if l >= self.min_layer else 0.1 for l in range(1, n_layers + 1)]

    def mapping(self, n_student: int, n_teacher: int) -> list[int]:
        """``pi(l)`` for l = 1..L_s: ``layer_map`` or the uniform ``round(l L_t / L_s)``."""
        if self.layer_map is not None:
            if len(self.layer_map) != n_student:
                raise LeapError(f"layer_map has {len(self.layer_map)} entries for a {n_student}-layer student")
            return [int(t) for t in self.layer_map]
        return uniform_layer_map(n_student, n_teacher)

    def late(self, n_layers: int) -> list[int]:
        """Student layers of L_late (SPEC: 9..11 of 12, the three below the last)."""
        if self.late_layers is not None:
            bad = [l for l in self.late_layers if not 1 <= l < n_layers]
            if bad:
                raise LeapError(f"late_layers {bad} outside 1..{n_layers - 1}")
            return list(self.late_layers)
        return list(range(max(1, n_layers - 3), n_layers))

    def beta_s_at(self, progress: float) -> float:
        """Progressive schedule: 0 before ``start``, linear to ``beta_s`` at ``end``, then flat."""
        if self.progressive is None:
            return self.beta_s
        a, b = self.progressive
        if progress < a:
            return 0.0
        if progress >= b or b == a:
            return self.beta_s
        return self.beta_s * (progress - a) / (b - a)


def uniform_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """``pi(l) = round(l L_t / L_s)`` (half up), l = 1..L_s; 24 -> 12 gives ``2l``."""
    return [int(math.floor(l * n_teacher / n_student + 0.5)) for l in range(1, n_student + 1)]


def _cos(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine over the last dim: ``[..., B, d] x [..., B, d] -> [..., B]``."""
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def final_loss(ps: Tensor, t_final: Tensor) -> Tensor:
    """L_final = mean_b (1 - cos(P e_s^(L_s), e_t^(L_t)))  (Eq. 4). ``ps``: [L_s, B, d_t] projected."""
    return (1 - _cos(ps[-1], t_final)).mean()


def inter_loss(ps: Tensor, t_mapped: Tensor) -> Tensor:
    """L_inter = (1/L_s) sum_l mean_b (1 - cos(P e_s^(l), e_t^(pi(l))))  (Eq. 5). ``t_mapped``: [L_s, B, d_t]."""
    return (1 - _cos(ps, t_mapped)).mean(dim=1).mean()


def soft_margin(gap: Tensor, slope: float, kind: str = "sigmoid") -> Tensor:
    """The exit terms' soft margin of ``gap = tau - cos``.

    ``sigmoid``: ``sigmoid(slope gap)`` (paper Eq. 6), in (0, 1); its gradient vanishes for
    ``gap >> 1/slope`` (cos far below tau). ``softplus``: ``softplus(slope gap) / slope``,
    a smooth hinge ``max(gap, 0)`` whose gradient tends to 1 far below tau and to 0 above.
    """
    if kind == "sigmoid":
        return torch.sigmoid(slope * gap)
    if kind == "softplus":
        return F.softplus(slope * gap) / slope
    raise LeapError(f"exit_margin must be one of {', '.join(EXIT_MARGINS)}, got {kind!r}")


def exit_teacher_loss(ps: Tensor, t_final: Tensor, w: Tensor, tau: float, slope: float,
                      margin: str = "sigmoid") -> Tensor:
    """L_exit_t = (1/L_s) sum_l w_l mean_b sigmoid(slope (tau - cos(P e_s^(l), e_t^(L_t))))  (Eq. 6)."""
    m = soft_margin(tau - _cos(ps, t_final.unsqueeze(0)), slope, margin)  # [L_s, B]
    return (w * m.mean(dim=1)).sum() / ps.shape[0]


def exit_student_loss(es: Tensor, w: Tensor, tau: float, slope: float, margin: str = "sigmoid",
                      target: str = "final") -> Tensor:
    """L_exit_s = (1/(L_s-1)) sum_{l<L_s} w_l mean_b sigmoid(slope (tau - cos(e_s^(l), sg(e_s^(L_s)))))  (Eq. 7).

    ``target="next"`` compares layer ``l`` with ``sg(e_s^(l+1))`` instead of the final layer,
    weighted by ``w_(l+1)``: the weight of the layer at which the exit rule (k = 1) reads
    that pair.
    """
    n = es.shape[0]
    if n < 2:
        return es.new_zeros(())
    ref = es[1:].detach() if target == "next" else es[-1].detach().unsqueeze(0)  # [L_s-1 or 1, B, d]
    m = soft_margin(tau - _cos(es[:-1], ref), slope, margin)  # [L_s-1, B]
    wl = w[1:] if target == "next" else w[:-1]
    return (wl * m.mean(dim=1)).sum() / (n - 1)


def contrast_loss(s_final: Tensor, t_final: Tensor, tau_c: float) -> Tensor:
    """L_contrast = mean_i KL(softmax(S_s[i]/tau_c) || softmax(S_t[i]/tau_c)), diagonal left out  (Eq. 8).

    ``S[i, j] = cos(e_i, e_j)`` of the final-layer vectors of the batch; the student comes
    first (the paper's direction). The diagonal is excluded from each row's softmax.
    """
    b = s_final.shape[0]
    if b < 3:  # a row needs >= 2 off-diagonal entries for the distribution to carry anything
        return s_final.new_zeros(())
    ss = F.normalize(s_final, dim=-1)
    tt = F.normalize(t_final, dim=-1)
    off = ~torch.eye(b, dtype=torch.bool, device=s_final.device)
    s_logits = (ss @ ss.T / tau_c)[off].view(b, b - 1)
    t_logits = (tt @ tt.T / tau_c)[off].view(b, b - 1)
    log_ps = F.log_softmax(s_logits, dim=-1)
    log_pt = F.log_softmax(t_logits, dim=-1)
    return (log_ps.exp() * (log_ps - log_pt)).sum(dim=-1).mean()


def late_loss(es: Tensor, layers: Sequence[int]) -> Tensor:
    """L_late = (1/|late|) sum_{l in late} mean_b (1 - cos(e_s^(l), sg(e_s^(L_s))) + 1e-8)^0.5  (Eq. 9)."""
    if not layers:
        return es.new_zeros(())
    idx = torch.as_tensor([l - 1 for l in layers], device=es.device)
    final = es[-1].detach().unsqueeze(0)
    d = (1 - _cos(es.index_select(0, idx), final) + 1e-8).clamp(min=1e-8).sqrt()  # [n_late, B]
    return d.mean(dim=1).mean()


def redund_loss(es: Tensor, margin: float) -> Tensor:
    """L_redund = -(1/(L_s-1)) sum_{l<L_s} mean_b min(||e^(l+1) - e^(l)||_2, m)  (App. A.3)."""
    if es.shape[0] < 2:
        return es.new_zeros(())
    u = F.normalize(es, dim=-1)
    step = (u[1:] - u[:-1]).norm(dim=-1)  # [L_s-1, B]
    return -step.clamp(max=margin).mean(dim=1).mean()


def leap_loss(
    student: Tensor,
    teacher: Mapping[int, Tensor],
    config: LeapLossConfig,
    progress: float,
    projection: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Every LEAP term and the weighted total (SPEC "Public interface").

    Args:
        student: ``[L_s, B, d_s]`` pooled vectors of student layers 1..L_s.
        teacher: ``{teacher_layer: [B, d_t]}`` with at least ``pi(1..L_s)`` and ``L_t = max(keys)``.
        config: weights, thresholds and which terms are on.
        progress: fraction of optimisation steps done, in [0, 1] (drives ``beta_s``).
        projection: ``P: d_s -> d_t`` (e.g. ``nn.Linear(d_s, d_t, bias=False)``) or ``None``.

    Returns:
        ``final, inter, exit, exit_t, exit_s, contrast, late, redund`` (unweighted) and
        ``total``. A term that is off is exactly 0 and adds nothing to ``total``.
    """
    if student.dim() != 3:
        raise LeapError(f"student must be [L_s, B, d_s], got shape {tuple(student.shape)}")
    if not teacher:
        raise LeapError("teacher holds no layers")
    n_s, bsz, _ = student.shape
    n_t = max(teacher)
    t_final = teacher[n_t]
    on = set(config.terms)
    zero = student.new_zeros(())
    out: dict[str, Tensor] = {k: zero for k in ("final", "inter", "exit", "exit_t", "exit_s", "contrast", "late", "redund")}

    ps = projection(student) if projection is not None else student  # [L_s, B, d_t]
    if ps.shape[-1] != t_final.shape[-1]:
        raise LeapError(
            f"student width {ps.shape[-1]} != teacher width {t_final.shape[-1]}: pass a projection P (d_s -> d_t)"
        )
    w = torch.as_tensor(config.weights(n_s), dtype=student.dtype, device=student.device)  # [L_s]

    if "final" in on:
        out["final"] = final_loss(ps, t_final)
    if "inter" in on:
        pi = config.mapping(n_s, n_t)
        missing = sorted({p for p in pi if p not in teacher})
        if missing:
            raise LeapError(
                f"layer map needs teacher layers {missing}, which the teacher targets lack "
                f"(have {sorted(teacher)}); rebuild the teacher cache for this layer map"
            )
        out["inter"] = inter_loss(ps, torch.stack([teacher[p] for p in pi]))
    if "exit" in on:
        out["exit_t"] = exit_teacher_loss(ps, t_final, w, config.tau, config.exit_slope, config.exit_margin)
        out["exit_s"] = exit_student_loss(student, w, config.tau, config.exit_slope, config.exit_margin,
                                          config.exit_s_target)
        out["exit"] = out["exit_t"] + config.beta_s_at(progress) * out["exit_s"]
    if "contrast" in on:
        out["contrast"] = contrast_loss(student[-1], t_final, config.tau_c)
    if "late" in on:
        out["late"] = late_loss(student, config.late(n_s))
    if "redund" in on:
        out["redund"] = redund_loss(student, config.redund_margin)

    weight = {"final": 1.0, "inter": config.alpha, "exit": config.beta, "contrast": config.delta,
              "late": config.eps, "redund": config.gamma}
    total = zero
    for term in TERMS:
        if term in on:
            total = total + weight[term] * out[term]
    out["total"] = total
    return out
