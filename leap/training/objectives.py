"""The registry of training objectives: name -> loss module (no torch at import).

Each objective is one file under :mod:`leap.training.losses` holding one ``nn.Module`` in the
style of sentence-transformers' losses (formula, reference, example, ``citation``), built
as ``cls(model, cache, config, heads)`` (:class:`leap.training.losses.base.DistillationLoss`).
Adding an objective is that file plus one line here (or :func:`register_objective` at run time);
nothing else checks the name.
"""

from __future__ import annotations

import importlib
from typing import Any

from leap.errors import LeapError

OBJECTIVES: dict[str, Any] = {
    "leap": "leap.training.losses.leap_loss:LeapLoss",
    "layerskip": "leap.training.losses.layerskip:LayerSkipLoss",
    "adaptive_layer": "leap.training.losses.adaptive_layer:AdaptiveLayerObjective",
}
"""Objective name -> ``"module:Class"`` (imported on first use) or the class itself."""


def register_objective(name: str, cls: Any) -> None:
    """Add (or replace) an objective at run time."""
    OBJECTIVES[name] = cls


def check_objective(name: str) -> None:
    """Raise :class:`LeapError` naming the known objectives when ``name`` is not one."""
    if name not in OBJECTIVES:
        raise LeapError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")


def objective_module(name: str) -> str | None:
    """The dotted module of a registered objective (``None`` for a class registered at run
    time): the workflow lists its files as the training rule's code input."""
    check_objective(name)
    ref = OBJECTIVES[name]
    return ref.partition(":")[0] if isinstance(ref, str) else None


def get_objective(name: str) -> type:
    """The loss class of objective ``name``."""
    check_objective(name)
    ref = OBJECTIVES[name]
    if isinstance(ref, str):
        module, _, cls = ref.partition(":")
        return getattr(importlib.import_module(module), cls)
    return ref
