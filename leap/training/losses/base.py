"""What every training objective shares: teacher targets from the cache, the projection
``P`` (and any trained per-layer maps), training progress, and the per-step log terms."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from leap.core.pooling import mean_pool
from leap.errors import LeapError
from leap.training.config import TrainConfig

PAPER_CITATION = """
@inproceedings{leap2026,
    title = "{LEAP}: Layer-wise Exit-Aware Pretraining for Efficient Transformer Inference",
    booktitle = "Proceedings of the 64th Annual Meeting of the Association for Computational Linguistics:
                 Industry Track",
    year = "2026",
}
"""


def pooled_layers(model: Any, features: dict[str, Tensor]) -> Tensor:
    """``[L_s, B, d_s]`` mean-pooled vectors of student layers 1..L_s (one forward pass;
    the transformers model must have ``output_hidden_states`` on)."""
    out = model(dict(features))
    hidden = out["all_layer_embeddings"][1:]  # drop the embedding layer
    mask = features["attention_mask"]
    return torch.stack([mean_pool(h, mask) for h in hidden])


def check_finite(terms: dict[str, Tensor], step: int) -> None:
    """Stop on NaN/inf: name the step and the first non-finite term."""
    for k, v in terms.items():
        if not torch.isfinite(v).all():
            raise LeapError(
                f"non-finite loss at step {step}: term {k!r} is {float(v.detach())}; lower the learning "
                f"rate or check the teacher cache for NaN rows"
            )


class DistillationLoss(nn.Module):
    """Base of every objective: a sentence-transformers loss module whose ``labels`` are row
    indices into the teacher cache, so the teacher never runs during training.

    Args:
        model: the student ``SentenceTransformer`` (``output_hidden_states`` on).
        cache: :class:`leap.training.teacher.TeacherCache`.
        config: the run's :class:`leap.training.config.TrainConfig`.
        heads: ``nn.ModuleDict`` with ``projection`` (``P: d_s -> d_t``) and, for
            ``layer_maps: trained``, ``layer_maps`` (:class:`leap.training.heads.TrainableLayerMaps`).

    ``progress`` (fraction of steps done) and ``step`` are set by the training callback;
    ``last_terms`` holds the latest unweighted terms for ``train_log.jsonl``.
    """

    citation: str = PAPER_CITATION

    def __init__(self, model: Any, cache: Any, config: TrainConfig, heads: nn.ModuleDict) -> None:
        super().__init__()
        self.model = model
        self.cache = cache
        self.config = config
        self.heads = heads
        self.progress = 0.0
        self.step = 0
        self.last_terms: dict[str, float] = {}

    @property
    def projection(self) -> nn.Module:
        return self.heads["projection"]

    @property
    def layer_maps(self) -> nn.Module | None:
        return self.heads["layer_maps"] if "layer_maps" in self.heads else None  # noqa: SIM401 - ModuleDict

    @classmethod
    def teacher_layers(cls, config: TrainConfig, n_student: int, n_teacher: int) -> list[int]:
        """Cached teacher layers ``forward`` reads (default: the final layer only)."""
        return [n_teacher]

    def targets(self, labels: Tensor, layers: list[int], device: torch.device) -> dict[int, Tensor]:
        """``{teacher_layer: [B, d_t]}`` float32 targets of the batch's rows."""
        return {l: t.to(device) for l, t in self.cache.get(labels, layers).items()}

    def get_config_dict(self) -> dict[str, Any]:
        """What sentences-transformers' model card records about this loss."""
        return {"objective": self.config.objective, "loss": self.config.loss.__dict__}

    def finish(self) -> None:
        """Called once training ends (remove hooks and the like)."""
