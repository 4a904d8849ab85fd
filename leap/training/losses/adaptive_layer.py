"""sentence-transformers' own ``AdaptiveLayerLoss`` around distillation to the teacher's
final embedding (not in the paper).

    inner(e) = 1 - cos(P e, e_t^(L_t))

``AdaptiveLayerLoss`` (library default arguments) calls the inner loss on the full model
and on randomly truncated copies, plus a KL term between layers; ``P`` is the same learned
projection LEAP uses to match the student's width to the teacher's.

Reference: Li et al., 2024, "2D Matryoshka Sentence Embeddings" (AdaptiveLayerLoss).

Example:
    >>> from leap.workflow.variants import make_train_config
    >>> make_train_config({}, "adaptive_layer", seed=0).objective
    'adaptive_layer'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from leap.errors import LeapError
from leap.training.losses.base import DistillationLoss, check_finite


class ProjectedCosineLoss(nn.Module):
    """``1 - cos(P e_s, e_t^(L_t))`` on the model's sentence embedding (the inner loss)."""

    def __init__(self, model: Any, owner: DistillationLoss) -> None:
        super().__init__()
        self.model = model
        self.owner = [owner]  # a plain list: not a submodule (no parameter sharing loops)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        owner = self.owner[0]
        features = list(sentence_features)[0]
        emb = self.model(features)["sentence_embedding"]  # same dict: AdaptiveLayerLoss caches layers in it
        n_t = owner.cache.num_teacher_layers
        t = owner.targets(labels, [n_t], emb.device)[n_t]
        loss = (1 - F.cosine_similarity(owner.projection(emb.float()), t, dim=-1)).mean()
        check_finite({"final": loss}, owner.step)
        return loss


class AdaptiveLayerObjective(DistillationLoss):
    """``AdaptiveLayerLoss`` (sentence-transformers, default arguments) around
    :class:`ProjectedCosineLoss`."""

    citation = """
@misc{li2024_2d,
    title = "{2D} Matryoshka Sentence Embeddings",
    author = "Li, Xianming and others",
    year = "2024",
    eprint = "2402.14776",
    archivePrefix = "arXiv",
}
"""

    def __init__(self, model: Any, cache: Any, config: Any, heads: nn.ModuleDict) -> None:
        super().__init__(model, cache, config, heads)
        if "layer_maps" in heads:
            raise LeapError("layer_maps: trained needs the leap or layerskip objective; use layer_maps: lstsq")
        from sentence_transformers.sentence_transformer.losses import AdaptiveLayerLoss

        self.adaptive = AdaptiveLayerLoss(model, ProjectedCosineLoss(model, self))

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        loss = self.adaptive(sentence_features, labels)
        check_finite({"total": loss}, self.step)
        self.last_terms = {"total": float(loss.detach())}
        return loss
