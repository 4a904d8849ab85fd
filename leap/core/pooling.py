"""Attention-mask-aware mean pooling (``p_l`` in the paper's notation).

Padding tokens are excluded from the mean, exactly as sentence-transformers'
``Pooling(pooling_mode="mean")`` does, so a sentence gets the same vector alone or
padded inside a batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of the token vectors of ``hidden`` over the tokens where ``attention_mask`` is 1.

    Args:
        hidden: ``[B, T, d]`` token states of one layer (any float dtype).
        attention_mask: ``[B, T]`` with 1 for real tokens and 0 for padding.

    Returns:
        ``[B, d]`` pooled vectors, in ``hidden``'s dtype. A row without any real token
        gets a zero vector (the sum is divided by ``max(count, 1e-9)``, as
        sentence-transformers does).

    Example:
        >>> h = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
        >>> mean_pool(h, torch.tensor([[1, 1, 0]]))
        tensor([[2., 2.]])
    """
    if hidden.dim() != 3 or attention_mask.dim() != 2 or hidden.shape[:2] != attention_mask.shape:
        raise ValueError(
            f"mean_pool expects hidden [B, T, d] and attention_mask [B, T]; "
            f"got {tuple(hidden.shape)} and {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    summed = (hidden * mask).sum(dim=1)  # [B, d]
    counts = mask.sum(dim=1).clamp(min=1e-9)  # [B, 1]
    return summed / counts


def mean_pool_weights(attention_mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``[B, 1, T]`` weights ``mask / count`` so that ``weights @ hidden`` is the mean pool.

    Computed once per batch (and again only when the batch shrinks), this turns every
    per-layer pool of the early-exit loop into one batched matmul (:func:`pool_with`).
    """
    mask = attention_mask.to(dtype)
    return (mask / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)).unsqueeze(1)


def pool_with(weights: Tensor, hidden: Tensor) -> Tensor:
    """``[B, d]`` mean pool of ``hidden [B, T, d]`` with :func:`mean_pool_weights`.

    Equal to :func:`mean_pool` up to float rounding (the sum is weighted, not divided).
    """
    return torch.bmm(weights.to(hidden.dtype), hidden).squeeze(1)
