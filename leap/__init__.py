"""LEAP: Layer-wise Exit-Aware Pretraining for Efficient Transformer Inference.

Reference implementation of the ACL 2026 paper. Serving: :class:`ExitSentenceTransformer`
(a ``SentenceTransformer`` with early exit, :mod:`leap.exit_model`), :func:`load_exit_model`
(torch or ONNX Runtime, both :class:`ExitEncoder`, :mod:`leap.encoder`) and the exit rule
:class:`ExitConfig` (:mod:`leap.config`); the exit diagnostic and its metrics
(:mod:`leap.diagnostic`, :mod:`leap.metrics`); training (:mod:`leap.training`) and the
objectives (:mod:`leap.losses`, registered in :mod:`leap.objectives`); the command line
(:mod:`leap.cli`).

The names below are imported on first use, so ``import leap`` and ``leap --version`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"
_LAZY = {
    "ExitSentenceTransformer": "exit_model",
    "load_exit_model": "exit_model",
    "ExitConfig": "config",
    "ExitEncoder": "encoder",
    "LayerMaps": "layer_maps",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'leap' has no attribute {name!r}")
