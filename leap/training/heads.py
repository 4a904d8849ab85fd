"""What trains beside the student but is not the inference model: the projection ``P``
(``d_s -> d_t``) and trained per-layer maps; and the least-squares maps
fitted after training. Maps are saved with the model (:mod:`leap.core.layer_maps`); ``P`` beside it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leap.core.layer_maps import LayerMaps, fit_layer_maps
from leap.training.losses.base import pooled_layers
from leap.training.student import hf_model


class TrainableLayerMaps(nn.Module):
    """Affine maps ``M_l`` (``d_s -> d_s``, identity init) for layers ``1..L_s - 1``, trained
    inside the loss; the last layer's map is the identity. ``forward``: ``[L_s, B, d_s]`` ->
    ``[L_s, B, d_s]``. :meth:`export` gives the :class:`LayerMaps` the model applies when a
    row exits."""

    def __init__(self, n_layers: int, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_layers - 1))
        with torch.no_grad():
            for m in self.layers:
                m.weight.copy_(torch.eye(dim))
                m.bias.zero_()

    def forward(self, student: Tensor) -> Tensor:
        return torch.stack([*(m(student[i]) for i, m in enumerate(self.layers)), student[-1]])

    def export(self) -> LayerMaps:
        n, d = len(self.layers) + 1, self.layers[0].weight.shape[0]
        maps = LayerMaps.identity(n, d)
        for i, m in enumerate(self.layers):
            maps.weight[i] = m.weight.detach().cpu().float()
            maps.bias[i] = m.bias.detach().cpu().float()
            maps.fitted[i] = True
        return maps


def _pooled(st: Any, sentences: Sequence[str], batch_size: int = 64) -> Tensor:
    """``[L_s, N, d_s]`` pooled vectors of every student layer (eval mode, no grad)."""
    st.eval()
    cfg = hf_model(st).config
    was, cfg.output_hidden_states = cfg.output_hidden_states, True
    chunks = []
    with torch.no_grad():
        for i in range(0, len(sentences), batch_size):
            feats = st.preprocess(list(sentences[i : i + batch_size]))
            feats = {k: v.to(st.device) if isinstance(v, Tensor) else v for k, v in feats.items()}
            chunks.append(pooled_layers(st, feats).float().cpu())
    cfg.output_hidden_states = was
    return torch.cat(chunks, dim=1)


def fit_student_maps(st: Any, sentences: Sequence[str]) -> LayerMaps:
    """Least-squares :class:`LayerMaps` of a trained student on ``sentences``."""
    return fit_layer_maps(_pooled(st, sentences))


def init_projection(
    st: Any, cache: Any, sentences: Sequence[str], indices: np.ndarray, method: str, seed: int
) -> nn.Linear:
    """``P: d_s -> d_t`` (no bias). ``lstsq``: ridge least squares from the initial student's
    final pooled vectors of ``sentences[indices]`` to the teacher's final vectors of the same
    rows (unit rows: cosine is what the losses read); ``random``: PyTorch's default init."""
    d_s = st.get_embedding_dimension()
    d_t = cache.dim
    gen = torch.Generator().manual_seed(seed)
    proj = nn.Linear(d_s, d_t, bias=False)
    with torch.no_grad():
        bound = 1 / math.sqrt(d_s)
        proj.weight.copy_(torch.empty(d_t, d_s).uniform_(-bound, bound, generator=gen))
    if method == "random":
        return proj
    x = _pooled(st, [sentences[j] for j in indices])[-1].double()
    y = cache.get(indices, [cache.num_teacher_layers])[cache.num_teacher_layers].double()
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    ridge = 1e-3 * torch.eye(d_s, dtype=torch.float64)
    w = torch.linalg.solve(x.T @ x + ridge, x.T @ y)  # [d_s, d_t]
    with torch.no_grad():
        proj.weight.copy_(w.T.float())
    return proj
