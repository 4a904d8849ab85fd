"""LEAP: Layer-wise Exit-Aware Pretraining for Efficient Transformer Inference (ACL 2026).

The names in ``__all__`` are the public API, each importable from ``leap`` and documented
there; everything else may change between versions. By what a user does:

* serve an exit-enabled model: :class:`ExitSentenceTransformer` (a ``SentenceTransformer``
  with early exit, paper Algorithm 1), its rule :class:`ExitConfig` and per-layer maps
  :class:`LayerMaps`;
* deploy it: :func:`convert` (exit-enable a published model), :func:`export_onnx` (ONNX
  Runtime graphs), :func:`diagnose`, :func:`bench`, :func:`calibrate` /
  :func:`calibrate_folder` (the fastest rule within a :class:`Budget`),
  :func:`calibrate_paths` (the fastest serving path), :func:`attach_monitor` (an
  :class:`ExitMonitor` with shadow check and fallback), :func:`amortize`;
* train a student: :func:`train` with a :class:`TrainConfig` (the LEAP loss,
  :class:`LeapLossConfig`; objectives registered with :func:`register_objective`), from a
  teacher cache (:func:`build_teacher_cache`, :class:`TeacherCache`);
* :class:`LeapError`: every problem with the user's input, named with its fix.

The names are imported on first use, so ``import leap`` and ``leap --version`` stay fast.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and the API documentation see; at run time, __getattr__
    from leap.core.exit_config import ExitConfig
    from leap.core.layer_maps import LayerMaps
    from leap.deploy.amortize import amortize
    from leap.deploy.bench import BenchConfig, bench
    from leap.deploy.calibrate import Budget, calibrate, calibrate_folder
    from leap.deploy.convert import convert
    from leap.deploy.diagnose import diagnose
    from leap.deploy.monitor import ExitMonitor, MonitorConfig, attach_monitor, detach_monitor
    from leap.deploy.serving_paths import calibrate_paths
    from leap.errors import LeapError
    from leap.serving.model import ExitSentenceTransformer
    from leap.serving.onnx_export import export_onnx
    from leap.training.config import LeapLossConfig, TrainConfig
    from leap.training.objectives import register_objective
    from leap.training.run import train
    from leap.training.teacher import TeacherCache, build_teacher_cache

try:
    __version__ = version("leap-exit")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"

_PUBLIC = {
    "ExitSentenceTransformer": "leap.serving.model",
    "ExitConfig": "leap.core.exit_config",
    "LayerMaps": "leap.core.layer_maps",
    "LeapError": "leap.errors",
    "convert": "leap.deploy.convert",
    "export_onnx": "leap.serving.onnx_export",
    "diagnose": "leap.deploy.diagnose",
    "bench": "leap.deploy.bench",
    "BenchConfig": "leap.deploy.bench",
    "Budget": "leap.deploy.calibrate",
    "calibrate": "leap.deploy.calibrate",
    "calibrate_folder": "leap.deploy.calibrate",
    "calibrate_paths": "leap.deploy.serving_paths",
    "ExitMonitor": "leap.deploy.monitor",
    "MonitorConfig": "leap.deploy.monitor",
    "attach_monitor": "leap.deploy.monitor",
    "detach_monitor": "leap.deploy.monitor",
    "amortize": "leap.deploy.amortize",
    "TrainConfig": "leap.training.config",
    "LeapLossConfig": "leap.training.config",
    "train": "leap.training.run",
    "register_objective": "leap.training.objectives",
    "build_teacher_cache": "leap.training.teacher",
    "TeacherCache": "leap.training.teacher",
}

__all__ = [
    "ExitSentenceTransformer",
    "ExitConfig",
    "LayerMaps",
    "LeapError",
    "convert",
    "export_onnx",
    "diagnose",
    "bench",
    "BenchConfig",
    "Budget",
    "calibrate",
    "calibrate_folder",
    "calibrate_paths",
    "ExitMonitor",
    "MonitorConfig",
    "attach_monitor",
    "detach_monitor",
    "amortize",
    "TrainConfig",
    "LeapLossConfig",
    "train",
    "register_objective",
    "build_teacher_cache",
    "TeacherCache",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'leap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
