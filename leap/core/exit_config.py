"""The exit rule (paper Algorithm 1, Eq. 6, Table 10) and the file it is saved in."""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from leap.core.settings import from_dict, setting
from leap.errors import LeapError

STRATEGIES = ("convergence", "pabee", "truncate", "none")


EXIT_CONFIG_FILE = "leap_exit.json"
"""The exit rule saved in an exit-enabled model folder (:meth:`ExitConfig.save`)."""


def _number(name: str, value: object, kind: type, what: str) -> numbers.Number:
    """``value`` when it is a ``kind`` number (never a bool or a string), else a :class:`LeapError`."""
    if isinstance(value, bool) or not isinstance(value, kind):
        raise LeapError(f"exit rule {name} must be {what}, got {value!r} ({type(value).__name__})")
    return value


def default_min_layer(num_layers: int) -> int:
    """``l_min`` when none is given: 6 (the paper's) for 12+ layers, half depth below.

    The one place this default is decided: Python, CLI and workflow all resolve
    ``ExitConfig(min_layer=None)`` through it.
    """
    return max(1, min(6, num_layers // 2))


@dataclass(frozen=True)
class ExitConfig:
    """The exit rule (paper Algorithm 1, Eq. 6, Table 10)."""

    strategy: str = setting(
        "convergence",
        "convergence (Eq. 6), pabee (Table 10), truncate (every sample stops at min_layer) or none (full depth)",
        enum=list(STRATEGIES),
    )
    theta: float = setting(0.95, "convergence threshold on cos(p_l, p_{l-k})", minimum=-1, maximum=1)
    patience: int = setting(1, "k: the convergence check compares layer l with l-k", minimum=1)
    min_layer: int | None = setting(
        None, "l_min, the first layer a sample may exit at; null = 6 for 12+ layers, half depth below", minimum=1
    )
    pabee_theta: float = setting(0.99, "PABEE agreement threshold on cos(p_l, p_{l-1})", minimum=-1, maximum=1)
    pabee_patience: int = setting(3, "consecutive agreeing layers PABEE needs to exit", minimum=1)
    monitor_only: bool = setting(False, "run every check but never exit (measures monitoring overhead)")

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, str) or self.strategy not in STRATEGIES:
            raise LeapError(f"unknown exit strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        for name in ("theta", "pabee_theta"):
            value = _number(name, getattr(self, name), numbers.Real, "a number")
            if not -1.0 <= value <= 1.0:
                raise LeapError(f"{name} must lie in [-1, 1] (a cosine threshold), got {value}")
            object.__setattr__(self, name, float(value))
        for name in ("patience", "pabee_patience", "min_layer"):
            value = getattr(self, name)
            if value is None and name == "min_layer":
                continue
            value = _number(name, value, numbers.Integral, "a whole number")
            if value < 1:
                why = " (layer 0 is the embedding output)" if name == "min_layer" else ""
                label = "patience (k)" if name == "patience" else name
                raise LeapError(f"{label} must be >= 1{why}, got {value}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.monitor_only, bool):
            raise LeapError(f"monitor_only must be true or false, got {self.monitor_only!r}")

    def resolve(self, num_layers: int) -> ExitConfig:
        """This rule for a ``num_layers``-deep model: ``min_layer`` filled in and checked."""
        cfg = self if self.min_layer is not None else replace(self, min_layer=default_min_layer(num_layers))
        if cfg.strategy != "none" and not 1 <= cfg.min_layer <= num_layers:
            raise LeapError(
                f"min_layer must lie in 1..{num_layers} for this {num_layers}-layer model, got {cfg.min_layer}"
            )
        return cfg

    def first_pooled_layer(self) -> int:
        """The first layer whose pooled vector the rule ever reads (earlier ones are skipped)."""
        if self.min_layer is None:
            raise LeapError("resolve the exit config against the model's depth first (ExitConfig.resolve)")
        if self.strategy == "convergence":
            return max(1, self.min_layer - self.patience)
        if self.strategy == "pabee":
            return 1
        if self.strategy == "truncate":
            return self.min_layer
        return 10**9

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "monitor_only"}

    @classmethod
    def from_dict(cls, d: dict) -> ExitConfig:
        return from_dict(cls, d, "exit")

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write ``leap_exit.json`` into a model folder (``extra``: e.g. a calibration record)."""
        from leap.files import write_json

        path = Path(folder) / EXIT_CONFIG_FILE
        write_json(path, {**self.to_dict(), **(extra or {})})
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ExitConfig | None:
        """The rule saved in ``folder``'s ``leap_exit.json``, or ``None`` when it has none."""
        d = read_exit_file(folder)
        if d is None:
            return None
        rule = {k: v for k, v in d.items() if k not in RECORD_KEYS}
        try:
            return cls.from_dict(rule)
        except LeapError as err:
            raise LeapError(f"{Path(folder) / EXIT_CONFIG_FILE}: {err}") from None


SERVING_KEY = "serving"
"""The key of ``leap_exit.json`` under which ``leap calibrate --paths auto`` records the path
it chose (backend, precision, threads, the measured table, the data hash, the machine)."""

CALIBRATION_KEY = "calibration"
"""The key of ``leap_exit.json`` under which calibration records what it measured (the
monitor's reference)."""

RECORD_KEYS = (CALIBRATION_KEY, SERVING_KEY)
"""The keys of ``leap_exit.json`` beside the rule's fields."""

SERVING_BACKENDS = ("torch", "onnx", "onnx-int8", "onnx-fused", "onnx-fused-int8")


def read_exit_file(folder: str | os.PathLike) -> dict | None:
    """The whole ``leap_exit.json`` of a model folder (the rule's fields and the records), or
    ``None`` when the folder has none. A key that is neither is refused, naming the allowed
    ones: a typo would otherwise serve the default rule."""
    import json

    path = Path(folder) / EXIT_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LeapError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); fix or delete it") from None
    if not isinstance(d, dict):
        raise LeapError(f"{path} must hold a JSON object (the exit rule), not {type(d).__name__}")
    allowed = [f.name for f in fields(ExitConfig)] + list(RECORD_KEYS)
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise LeapError(f"{path}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
    return d


def read_serving(folder: str | os.PathLike) -> dict | None:
    """The serving record of a model folder's ``leap_exit.json``, or ``None`` when it has none
    (a folder never calibrated with ``--paths auto``)."""
    rec = (read_exit_file(folder) or {}).get(SERVING_KEY)
    if rec is None:
        return None
    if not isinstance(rec, dict) or rec.get("backend") not in SERVING_BACKENDS:
        path = Path(folder) / EXIT_CONFIG_FILE
        raise LeapError(
            f"{path}: its {SERVING_KEY!r} record names no backend of {', '.join(SERVING_BACKENDS)}; "
            f"calibrate again with `leap calibrate {folder} --data FILE --paths auto`, or delete the record"
        )
    return rec
