"""Per-layer maps into the final layer's space (not in the paper).

A sample that exits at layer ``l`` returns ``e^(l)``, a vector of layer ``l``'s space,
and is then compared with samples that exited elsewhere. A small affine map per exit
layer, ``M_l(p) = A_l p + b_l`` (``d x d``), fitted by ridge least squares from the
pooled vectors ``p_l`` of training sentences to their final-layer unit vectors
``e^(L)``, moves every exit layer into the final layer's space. The final layer's map is
the identity. Because ``M_l`` is affine and mean-pooling weights sum to 1, mapping the
pooled vector equals pooling the mapped token states; the encoder maps a row once, when
it exits.

Stored beside the model as ``layer_maps.safetensors``: ``weight [L, d, d]`` (``A_l``,
applied as ``p @ A_l.T``), ``bias [L, d]`` and ``fitted [L]`` (bool; unfitted layers keep
the identity).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from leap.errors import LeapError

FILENAME = "layer_maps.safetensors"


@dataclass
class LayerMaps:
    """Affine maps ``M_l`` for layers ``1..L`` (index ``l - 1``).

    Attributes:
        weight: ``[L, d, d]``; ``M_l(p) = p @ weight[l-1].T + bias[l-1]``.
        bias: ``[L, d]``.
        fitted: ``[L]`` bool; the identity where False (always at the last layer).
    """

    weight: Tensor
    bias: Tensor
    fitted: Tensor

    @property
    def num_layers(self) -> int:
        return int(self.weight.shape[0])

    @property
    def dim(self) -> int:
        return int(self.weight.shape[-1])

    @classmethod
    def identity(cls, num_layers: int, dim: int) -> LayerMaps:
        eye = torch.eye(dim).expand(num_layers, dim, dim).clone()
        return cls(eye, torch.zeros(num_layers, dim), torch.zeros(num_layers, dtype=torch.bool))

    def apply(self, layer: int, x: Tensor) -> Tensor:
        """``M_l`` on ``x [..., d]`` (pooled vectors or token states; 1-based ``layer``)."""
        if not bool(self.fitted[layer - 1]):
            return x
        w = self.weight[layer - 1].to(device=x.device, dtype=x.dtype)
        b = self.bias[layer - 1].to(device=x.device, dtype=x.dtype)
        return x @ w.T + b

    def apply_all(self, layer_vectors: Tensor) -> Tensor:
        """``[L, N, d]`` -> every layer's slice through its own map."""
        if layer_vectors.shape[0] != self.num_layers or layer_vectors.shape[-1] != self.dim:
            raise LeapError(
                f"layer maps are for {self.num_layers} layers of width {self.dim}; "
                f"got vectors of shape {tuple(layer_vectors.shape)}"
            )
        return torch.stack([self.apply(l, layer_vectors[l - 1]) for l in range(1, self.num_layers + 1)])

    # -- files --------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        from leap.files import atomic_path

        path = Path(folder) / FILENAME
        tensors = {
            "weight": self.weight.float().contiguous(),
            "bias": self.bias.float().contiguous(),
            "fitted": self.fitted.to(torch.uint8).contiguous(),
        }
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp))
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> LayerMaps | None:
        """The maps saved in ``folder``, or ``None`` when it has none."""
        from safetensors.torch import load_file

        path = Path(folder) / FILENAME
        if not path.exists():
            return None
        t = load_file(str(path))
        return cls(t["weight"], t["bias"], t["fitted"].bool())


def fit_layer_maps(
    layer_vectors: Tensor,
    layers: list[int] | None = None,
    ridge: float = 1e-2,
) -> LayerMaps:
    """Ridge least-squares affine maps from each layer's pooled vectors to the final unit vectors.

    Args:
        layer_vectors: ``[L, N, d]`` pooled vectors of layers ``1..L`` on training sentences.
        layers: the layers to fit (1-based, each ``< L``); default every layer below ``L``.
        ridge: ridge penalty on ``A_l`` relative to the mean squared feature (not on ``b_l``).

    Returns:
        :class:`LayerMaps` with the last layer (and any layer not in ``layers``) the identity.
    """
    v = layer_vectors.double()
    n_layers, n, d = v.shape
    if n < 2:
        raise LeapError(f"fitting layer maps needs at least 2 sentences, got {n}")
    maps = LayerMaps.identity(n_layers, d)
    target = v[-1] / torch.linalg.vector_norm(v[-1], dim=-1, keepdim=True).clamp_min(1e-12)  # [N, d]
    for l in layers if layers is not None else range(1, n_layers):
        if not 1 <= l < n_layers:
            raise LeapError(f"layer maps are fitted for layers 1..{n_layers - 1}, got {l}")
        x = v[l - 1]
        mu_x, mu_y = x.mean(0), target.mean(0)
        xc, yc = x - mu_x, target - mu_y
        scale = float((xc * xc).sum(-1).mean()) / d
        a = torch.linalg.solve(xc.T @ xc + ridge * n * scale * torch.eye(d, dtype=v.dtype), xc.T @ yc)  # [d, d]
        maps.weight[l - 1] = a.T.float()
        maps.bias[l - 1] = (mu_y - mu_x @ a).float()
        maps.fitted[l - 1] = True
    return maps
