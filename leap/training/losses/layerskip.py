"""LayerSkip adapted to embeddings (not in the paper; our reading).

    L = L_baseline + sum_l s_l (1 - cos(P e_s^(l), e_t^(L_t))),   s_l = l / sum_j j

while training, each sample skips layer ``l`` with probability ``p_l = p_max l / L_s``
(``p_max = layerskip_p_max``, 0.1; no dropout at inference). ``L_baseline`` is the LEAP
objective with the variant's terms (the baseline's: final, inter, contrast). Our reading
of LayerSkip (Elhoushi et al., 2024) for an encoder trained by distillation.

Example:
    >>> from leap.workflow.variants import make_train_config
    >>> make_train_config({}, "layerskip", seed=0).objective
    'layerskip'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from leap.training.losses.base import check_finite, pooled_layers
from leap.training.losses.leap_loss import LeapLoss
from leap.training.losses.terms import layerskip_exit_loss


class LayerDropout:
    """Per-sample layer dropout with rate ``p_l = p_max l / L`` (LayerSkip): a dropped sample
    passes layer ``l`` unchanged. Active only while the model is in training mode."""

    def __init__(self, model: nn.Module, p_max: float) -> None:
        from leap.core.early_exit import adapter_for

        layers = adapter_for(model).layers(model)
        n = len(layers)
        self.handles = [
            layer.register_forward_hook(self._hook(p_max * (i + 1) / n), with_kwargs=True)
            for i, layer in enumerate(layers)
        ]

    @staticmethod
    def _hook(p: float):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if not module.training or p <= 0:
                return None
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            drop = torch.rand(h_in.shape[0], device=h_in.device) < p  # [B]
            mixed = torch.where(drop[:, None, None], h_in, h_out)
            return (mixed, *output[1:]) if isinstance(output, tuple) else mixed

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class LayerSkipLoss(LeapLoss):
    """LEAP terms of the variant plus LayerSkip's early-exit term, under layer dropout."""

    citation = """
@inproceedings{elhoushi2024layerskip,
    title = "{LayerSkip}: Enabling Early Exit Inference and Self-Speculative Decoding",
    author = "Elhoushi, Mostafa and others",
    booktitle = "Proceedings of ACL",
    year = "2024",
}
"""

    def __init__(self, model: Any, cache: Any, config: Any, heads: Any) -> None:
        super().__init__(model, cache, config, heads)
        from leap.training.student import hf_model

        self.dropout = LayerDropout(hf_model(model), config.layerskip_p_max)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)[0]
        student = pooled_layers(self.model, features).float()  # [L_s, B, d_s]
        out = self.terms(student, labels)
        t_final = self.targets(labels, [self.cache.num_teacher_layers], student.device)[self.cache.num_teacher_layers]
        out["layerskip"] = layerskip_exit_loss(self.projection(student), t_final)
        out["total"] = out["total"] + out["layerskip"]
        check_finite(out, self.step)
        self.last_terms = {k: float(v.detach()) for k, v in out.items()}
        return out["total"]

    def finish(self) -> None:
        self.dropout.remove()
