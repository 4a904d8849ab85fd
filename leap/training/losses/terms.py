"""The LEAP loss terms as pure functions over tensors (paper Eq. 3-9).

Inputs are pooled (not normalised) vectors, stacked per layer: ``[L_s, B, d]``. Every term
is computed per sample and averaged over the batch. Equation numbers are the paper's:
Eq. 4 L_exit_t, Eq. 5 L_exit_s, Eq. 8 L_late, Eq. 9 L_redund; L_final, L_inter and
L_contrast have no number. L_cross and the layerskip term are not in the paper.
The objectives (:mod:`leap.training.losses.leap_loss` and its siblings) combine them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from leap.errors import LeapError
from leap.training.config import EXIT_MARGINS


def _cos(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine over the last dim: ``[..., B, d] x [..., B, d] -> [..., B]``."""
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def final_loss(ps: Tensor, t_final: Tensor) -> Tensor:
    """L_final = mean_b (1 - cos(P e_s^(L_s), e_t^(L_t))) (no equation number). ``ps``: [L_s, B, d_t] projected."""
    return (1 - _cos(ps[-1], t_final)).mean()


def inter_loss(ps: Tensor, t_mapped: Tensor) -> Tensor:
    """L_inter = (1/L_s) sum_l mean_b (1 - cos(P e_s^(l), e_t^(pi(l)))) (no equation number).

    ``t_mapped``: ``[L_s, B, d_t]`` teacher layers ``pi(1..L_s)``."""
    return (1 - _cos(ps, t_mapped)).mean(dim=1).mean()


def soft_margin(gap: Tensor, slope: float, kind: str = "sigmoid") -> Tensor:
    """The exit terms' soft margin of ``gap = tau - cos``.

    ``sigmoid``: ``sigmoid(slope gap)`` (paper Eq. 4, 5), in (0, 1); its gradient vanishes for
    ``gap >> 1/slope`` (cos far below tau). ``softplus``: ``softplus(slope gap) / slope``,
    a smooth hinge ``max(gap, 0)`` whose gradient tends to 1 far below tau and to 0 above.
    """
    if kind == "sigmoid":
        return torch.sigmoid(slope * gap)
    if kind == "softplus":
        return F.softplus(slope * gap) / slope
    raise LeapError(f"exit_margin must be one of {', '.join(EXIT_MARGINS)}, got {kind!r}")


def exit_teacher_loss(
    ps: Tensor, t_final: Tensor, w: Tensor, tau: float, slope: float, margin: str = "sigmoid"
) -> Tensor:
    """L_exit_t = (1/L_s) sum_l w_l mean_b sigmoid(slope (tau - cos(P e_s^(l), e_t^(L_t))))  (Eq. 4)."""
    m = soft_margin(tau - _cos(ps, t_final.unsqueeze(0)), slope, margin)  # [L_s, B]
    return (w * m.mean(dim=1)).sum() / ps.shape[0]


def exit_student_loss(
    es: Tensor, w: Tensor, tau: float, slope: float, margin: str = "sigmoid", target: str = "final"
) -> Tensor:
    """L_exit_s = (1/(L_s-1)) sum_{l<L_s} w_l mean_b sigmoid(slope (tau - cos(e_s^(l), sg(e_s^(L_s)))))  (Eq. 5).

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
    """L_contrast = mean_i KL(softmax(S_s[i]/tau_c) || softmax(S_t[i]/tau_c)), diagonal left out (no equation number).

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


def depth_loss(mapped: Tensor, es_final: Tensor, w: Tensor, layers: Sequence[int]) -> Tensor:
    """L_depth: every exit layer, through its map, distilled to the student's own final
    embedding (not in the paper):
    ``(1/|E|) sum_{l in E} w_l mean_b (1 - cos(M_l p_l, sg(p_L)))``. ``mapped``: ``[L_s, B, d]``
    student vectors after the per-layer maps; ``layers``: ``E`` (1-based, below ``L_s``)."""
    if not layers:
        return mapped.new_zeros(())
    idx = torch.as_tensor([l - 1 for l in layers], device=mapped.device)
    d = 1 - _cos(mapped.index_select(0, idx), es_final.detach().unsqueeze(0))  # [|E|, B]
    return (w.index_select(0, idx) * d.mean(dim=1)).sum() / len(layers)


def cross_depth_loss(mapped: Tensor, layers: Sequence[int]) -> Tensor:
    """L_cross: cross-depth relational distillation (not in the paper).

    Sentences that exit at different depths are compared with each other, so for every pair
    of depths ``(l, l')`` in ``layers`` (``l <= l'``; 1-based; the last layer included) the
    cosine of sentence ``i`` at depth ``l`` and sentence ``j`` at depth ``l'`` should equal
    their cosine at full depth: ``mean_{l <= l'} mean_{i != j} (cos(M_l p_l,i, M_l' p_l',j)
    - sg(cos(p_L,i, p_L,j)))^2``. The squared error on the cosine itself (not a softmax of
    it) keeps scores of different depths on one scale, which a ranking over documents that
    exited at different depths needs. ``mapped``: ``[L_s, B, d]`` after the per-layer maps.
    """
    b = mapped.shape[1]
    if b < 2 or len(layers) < 1:
        return mapped.new_zeros(())
    u = F.normalize(mapped, dim=-1)
    target = (u[-1] @ u[-1].T).detach()  # [B, B] full-depth cosines (the last layer has no map)
    off = ~torch.eye(b, dtype=torch.bool, device=mapped.device)
    terms = []
    for i, l in enumerate(layers):
        for l2 in layers[i:]:
            if l == l2 == mapped.shape[0]:
                continue  # full depth against itself: zero by construction
            s = u[l - 1] @ u[l2 - 1].T  # [B, B]: i at l, j at l'
            terms.append(((s - target)[off] ** 2).mean())
    return torch.stack(terms).mean() if terms else mapped.new_zeros(())


def late_loss(es: Tensor, layers: Sequence[int]) -> Tensor:
    """L_late = (1/|late|) sum_{l in late} mean_b (1 - cos(e_s^(l), sg(e_s^(L_s))) + 1e-8)^0.5  (Eq. 8)."""
    if not layers:
        return es.new_zeros(())
    idx = torch.as_tensor([l - 1 for l in layers], device=es.device)
    final = es[-1].detach().unsqueeze(0)
    d = (1 - _cos(es.index_select(0, idx), final) + 1e-8).clamp(min=1e-8).sqrt()  # [n_late, B]
    return d.mean(dim=1).mean()


def redund_loss(es: Tensor, margin: float) -> Tensor:
    """L_redund = -(1/(L_s-1)) sum_{l<L_s} mean_b min(||e^(l+1) - e^(l)||_2, m)  (Eq. 9, App. A.3)."""
    if es.shape[0] < 2:
        return es.new_zeros(())
    u = F.normalize(es, dim=-1)
    step = (u[1:] - u[:-1]).norm(dim=-1)  # [L_s-1, B]
    return -step.clamp(max=margin).mean(dim=1).mean()


def layerskip_exit_loss(ps: Tensor, t_final: Tensor) -> Tensor:
    """LayerSkip's early-exit term for embeddings (not in the paper; our reading):
    ``sum_l s_l mean_b (1 - cos(P e_s^(l), e_t^(L_t)))``, ``s_l = l / sum_j j``. ``ps``: ``[L, B, d_t]``."""
    n = ps.shape[0]
    s = torch.arange(1, n + 1, dtype=ps.dtype, device=ps.device)
    s = s / s.sum()
    cos = F.cosine_similarity(ps, t_final.unsqueeze(0).expand_as(ps), dim=-1)  # [L, B]
    return (s[:, None] * (1 - cos)).sum(0).mean()
