"""The LEAP objective (paper Eq. 3 and Eq. 7).

    L = L_final + alpha L_inter + beta L_exit + delta L_contrast + eps L_late + gamma L_redund

with ``L_exit = L_exit_t + beta_s(t) L_exit_s`` (Eq. 4, 5). Which terms are on is
configuration (:attr:`leap.training.config.LeapLossConfig.terms`), so the baseline and every
ablation row of Table 11 are configs, not code paths. Not in the paper and off unless a
variant asks: L_depth and L_cross (weights ``depth_weight``, ``cross_weight``;
:func:`leap.training.losses.terms.depth_loss`, :func:`leap.training.losses.terms.cross_depth_loss`), and
per-layer maps ``M_l`` applied before ``P`` in every student-vs-teacher term.

Inputs are pooled (not normalised) vectors: ``student [L_s, B, d_s]`` for student layers
``1..L_s`` and ``teacher {layer: [B, d_t]}`` holding at least the layers ``pi(1..L_s)``
and ``L_t`` (its largest key). ``P`` (``projection``, ``d_s -> d_t``, no bias) maps
student vectors before every student-vs-teacher cosine; cosine is scale-invariant, so
``cos(P e, t) = cos(P p, t)``.

Example:
    >>> import torch
    >>> from leap.training.config import LeapLossConfig
    >>> from leap.training.losses.leap_loss import leap_loss
    >>> cfg = LeapLossConfig(focus_layer=3)
    >>> out = leap_loss(torch.randn(6, 8, 16), {l: torch.randn(8, 16) for l in range(1, 13)}, cfg, progress=0.5)
    >>> sorted(out)  # doctest: +NORMALIZE_WHITESPACE
    ['contrast', 'cross', 'depth', 'exit', 'exit_s', 'exit_t', 'final', 'inter', 'late', 'redund', 'total']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from leap.errors import LeapError
from leap.training.config import TERMS, LeapLossConfig, TrainConfig
from leap.training.losses.base import DistillationLoss, check_finite, pooled_layers
from leap.training.losses.terms import (
    contrast_loss,
    cross_depth_loss,
    depth_loss,
    exit_student_loss,
    exit_teacher_loss,
    final_loss,
    inter_loss,
    late_loss,
    redund_loss,
)

OUTPUT_KEYS = ("final", "inter", "exit", "exit_t", "exit_s", "contrast", "late", "redund", "depth", "cross")


def leap_loss(
    student: Tensor,
    teacher: Mapping[int, Tensor],
    config: LeapLossConfig,
    progress: float,
    projection: Callable[[Tensor], Tensor] | None = None,
    maps: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Every LEAP term and the weighted total.

    Args:
        student: ``[L_s, B, d_s]`` pooled vectors of student layers 1..L_s.
        teacher: ``{teacher_layer: [B, d_t]}`` with at least ``pi(1..L_s)`` and ``L_t = max(keys)``.
        config: weights, thresholds and which terms are on.
        progress: fraction of optimisation steps done, in [0, 1] (drives ``beta_s``).
        projection: ``P: d_s -> d_t`` (e.g. ``nn.Linear(d_s, d_t, bias=False)``) or ``None``.
        maps: per-layer maps ``[L_s, B, d_s] -> [L_s, B, d_s]`` into the last layer's space
            (not in the paper), applied before ``P`` in every student-vs-teacher term and in
            L_depth and L_cross; ``None`` = identity. The terms on the student's own trajectory
            (L_exit_s, L_late, L_redund) read the raw vectors, which the exit rule reads.

    Returns:
        ``final, inter, exit, exit_t, exit_s, contrast, late, redund, depth, cross`` (unweighted)
        and ``total``. A term that is off is exactly 0 and adds nothing to ``total``.
    """
    if student.dim() != 3:
        raise LeapError(f"student must be [L_s, B, d_s], got shape {tuple(student.shape)}")
    if not teacher:
        raise LeapError("teacher holds no layers")
    n_s, _, _ = student.shape
    n_t = max(teacher)
    t_final = teacher[n_t]
    on = set(config.terms)
    zero = student.new_zeros(())
    out: dict[str, Tensor] = {k: zero for k in OUTPUT_KEYS}

    mapped = maps(student) if maps is not None else student  # [L_s, B, d_s]
    ps = projection(mapped) if projection is not None else mapped  # [L_s, B, d_t]
    if ps.shape[-1] != t_final.shape[-1]:
        raise LeapError(
            f"student width {ps.shape[-1]} != teacher width {t_final.shape[-1]}: pass a projection P (d_s -> d_t)"
        )
    w = torch.as_tensor(config.weights(n_s), dtype=student.dtype, device=student.device)  # [L_s]

    if "final" in on:
        out["final"] = final_loss(ps, t_final)
    if "inter" in on:
        out["inter"] = inter_loss(ps, _aligned_targets(teacher, config.mapping(n_s, n_t)))
    if "exit" in on:
        out["exit_t"] = exit_teacher_loss(ps, t_final, w, config.tau, config.exit_slope, config.exit_margin)
        out["exit_s"] = exit_student_loss(
            student, w, config.tau, config.exit_slope, config.exit_margin, config.exit_s_target
        )
        out["exit"] = out["exit_t"] + config.beta_s_at(progress) * out["exit_s"]
    out |= _trajectory_terms(student, mapped, t_final, w, config, on)
    out["total"] = _weighted_total(out, config, on, zero)
    return out


def _aligned_targets(teacher: Mapping[int, Tensor], pi: list[int]) -> Tensor:
    """``[L_s, B, d_t]`` teacher layers ``pi(1..L_s)``, or one error naming the missing ones."""
    missing = sorted({p for p in pi if p not in teacher})
    if missing:
        raise LeapError(
            f"layer map needs teacher layers {missing}, which the teacher targets lack "
            f"(have {sorted(teacher)}); rebuild the teacher cache for this layer map"
        )
    return torch.stack([teacher[p] for p in pi])


def _trajectory_terms(
    student: Tensor, mapped: Tensor, t_final: Tensor, w: Tensor, config: LeapLossConfig, on: set[str]
) -> dict[str, Tensor]:
    """The terms on the student's own layers (L_contrast, L_late, L_redund; L_depth, L_cross)."""
    n_s = student.shape[0]
    out: dict[str, Tensor] = {}
    if "contrast" in on:
        out["contrast"] = contrast_loss(student[-1], t_final, config.tau_c)
    if "late" in on:
        out["late"] = late_loss(student, config.late(n_s))
    if "redund" in on:
        out["redund"] = redund_loss(student, config.redund_margin)
    if "depth" in on:
        out["depth"] = depth_loss(mapped, student[-1], w, config.exit_layers(n_s))
    if "cross" in on:
        out["cross"] = cross_depth_loss(mapped, [*config.exit_layers(n_s), n_s])
    return out


def _weighted_total(out: dict[str, Tensor], config: LeapLossConfig, on: set[str], zero: Tensor) -> Tensor:
    """Eq. 7: the weighted sum of the terms that are on."""
    weight = {
        "final": 1.0,
        "inter": config.alpha,
        "exit": config.beta,
        "contrast": config.delta,
        "late": config.eps,
        "redund": config.gamma,
        "depth": config.depth_weight,
        "cross": config.cross_weight,
    }
    total = zero
    for term in TERMS:
        if term in on:
            total = total + weight[term] * out[term]
    return total


class LeapLoss(DistillationLoss):
    """The LEAP objective as a sentence-transformers loss module (paper Eq. 3, 7).

    ``forward(sentence_features, labels)``: one forward pass of the student with every
    layer's hidden states, mean-pooled per layer, against the cached teacher layers of the
    batch's rows (``labels``), through :func:`leap_loss`.

    Reference: the paper, sec 3 and App. A; the README's "Readings of the paper" lists each open choice and ours.

    Example:
        >>> from leap.workflow.variants import make_train_config
        >>> cfg = make_train_config({"loss": {"focus_layer": 3}}, "leap", seed=0)
        >>> cfg.objective, cfg.loss.terms
        ('leap', ('final', 'inter', 'exit', 'contrast', 'late', 'redund'))
    """

    @classmethod
    def teacher_layers(cls, config: TrainConfig, n_student: int, n_teacher: int) -> list[int]:
        if config.loss.reads_aligned_targets:
            return sorted(set(config.loss.mapping(n_student, n_teacher)) | {n_teacher})
        return [n_teacher]

    def __init__(self, model: Any, cache: Any, config: TrainConfig, heads: Any) -> None:
        super().__init__(model, cache, config, heads)
        from leap.core.early_exit import num_layers
        from leap.training.student import hf_model

        n_s = num_layers(hf_model(model))
        self.read_layers = self.teacher_layers(config, n_s, cache.num_teacher_layers)

    def terms(self, student: Tensor, labels: Tensor) -> dict[str, Tensor]:
        teacher = self.targets(labels, self.read_layers, student.device)
        return leap_loss(student.float(), teacher, self.config.loss, self.progress, self.projection, self.layer_maps)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)[0]
        out = self.terms(pooled_layers(self.model, features), labels)  # student: [L_s, B, d_s]
        check_finite(out, self.step)
        self.last_terms = {k: float(v.detach()) for k, v in out.items()}
        self.last_terms["beta_s"] = self.config.loss.beta_s_at(self.progress)
        return out["total"]
