"""The student: its initialisation, re-initialisation and truncation to fewer layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from leap.training.config import TrainConfig


def hf_model(st: Any) -> nn.Module:
    """The transformers model inside a SentenceTransformer."""
    first = st[0]
    return getattr(first, "auto_model", None) or first.model


def load_student(cfg: TrainConfig, device: str = "cpu") -> Any:
    """The student ``SentenceTransformer``: init (Transformer -> mean Pooling (-> Normalize)
    only), optional re-initialisation and truncation to ``cfg.n_layers``. It trains at
    ``cfg.max_seq_length`` and is saved at the longer of that and its init's own length."""
    from leap.core.early_exit import truncate_layers
    from leap.serving.model import check_servable, load_sentence_transformer

    st = load_sentence_transformer(cfg.student, device=device)
    check_servable(st, cfg.student)
    model = hf_model(st)
    if cfg.random_init:
        torch.manual_seed(cfg.seed)
        model.apply(model._init_weights)
    if cfg.n_layers is not None:
        truncate_layers(model, cfg.n_layers)
    st.leap_served_max_seq_length = max(int(st.max_seq_length or 0), cfg.max_seq_length)
    st.max_seq_length = cfg.max_seq_length
    return st
