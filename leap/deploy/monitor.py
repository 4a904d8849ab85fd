"""Monitoring a served exit model (paper sec 5.3, App. G): running exit-layer statistics, an
optional shadow check that re-encodes a share of requests at full depth, drift alerts
against the calibration record, and a fallback to full depth (off by default) that switches
back when the shadow agreement recovers.

:func:`attach_monitor` installs an :class:`ExitMonitor` around the model's ``forward`` (the
model itself knows only its exit rule); :func:`detach_monitor` removes it.

Example:
    >>> from leap import ExitSentenceTransformer, MonitorConfig, attach_monitor
    >>> model = ExitSentenceTransformer("path/to/student")
    >>> monitor = attach_monitor(model)        # every encode call is counted
    >>> model.encode(["A man plays a guitar."])
    >>> monitor.stats()["exit_rate"]
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leap.core.exit_config import ExitConfig
from leap.deploy.calibrate import Budget, agreement
from leap.errors import LeapError

log = logging.getLogger(__name__)


@dataclass
class MonitorConfig:
    """What the monitor does.

    Attributes:
        shadow_fraction: share of batches also encoded at full depth for the shadow check (0: off).
        budget: the agreement the shadow check holds the exit embeddings to.
        window: shadow-checked rows the agreement is computed over (and the fallback decided on).
        fallback: switch to ``fallback_exit`` while the shadow agreement is below budget.
        fallback_exit: the rule used during a fallback (default: full depth).
        recover_margin: switch back once agreement is this much above budget (hysteresis).
        drift_layers: alert when E[l] moves more than this from the calibration record's.
        seed: of the shadow sampling.
    """

    shadow_fraction: float = 0.0
    budget: Budget = field(default_factory=lambda: Budget(nn10=0.8, mean_cosine=0.9))
    window: int = 64
    fallback: bool = False
    fallback_exit: ExitConfig = field(default_factory=lambda: ExitConfig(strategy="none"))
    recover_margin: float = 0.02
    drift_layers: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.shadow_fraction <= 1:
            raise LeapError(f"shadow_fraction must lie in [0, 1], got {self.shadow_fraction}")
        if self.window < 11:
            raise LeapError(f"the shadow window needs at least 11 rows (NN@10), got {self.window}")
        if self.fallback and self.shadow_fraction == 0:
            raise LeapError("fallback needs the shadow check: set shadow_fraction > 0")


class ExitMonitor:
    """Running statistics of a serving exit model, a shadow check, drift alerts and fallback.

    ``observe(exit_layers)`` counts exits; ``shadow(exit_emb, full_emb)`` adds shadow-checked
    rows. :meth:`stats` returns the counters as a dict (histogram, E[l], exit rate, shadow
    agreement, alerts, fallback state); alerts and switches go to :mod:`logging`
    (``leap.deploy``). Thread-safe.
    """

    def __init__(self, num_layers: int, config: MonitorConfig = MonitorConfig(), reference: dict | None = None) -> None:
        self.cfg = config
        self.L = num_layers
        self.reference = reference  # a calibration record (its exit_distribution and E[l])
        self.lock = threading.Lock()
        self.hist = np.zeros(num_layers, dtype=np.int64)
        self.rows = 0
        self.shadow_exit: deque[np.ndarray] = deque(maxlen=config.window)
        self.shadow_full: deque[np.ndarray] = deque(maxlen=config.window)
        self.shadow_rows = 0
        self.alerts = {"drift": 0, "agreement": 0}
        self.fallback_active = False
        self.switches = 0
        self.rng = np.random.default_rng(config.seed)

    @classmethod
    def for_model(cls, model: Any, config: MonitorConfig = MonitorConfig()) -> ExitMonitor:
        """A monitor for ``model`` with its folder's calibration record (if any) as reference."""
        folder = getattr(model, "folder", None)
        return cls(model.num_layers, config, folder.calibration if folder is not None else None)

    def wants_shadow(self) -> bool:
        with self.lock:
            return self.cfg.shadow_fraction > 0 and bool(self.rng.random() < self.cfg.shadow_fraction)

    def observe(self, exit_layers: np.ndarray) -> None:
        with self.lock:
            self.hist += np.bincount(np.asarray(exit_layers) - 1, minlength=self.L)[: self.L]
            self.rows += len(exit_layers)
            ref = self.reference
            if ref and ref.get("achieved") and self.rows >= self.cfg.window:
                drift = abs(self._expected() - ref["achieved"]["expected_exit_layer"])
                if drift > self.cfg.drift_layers:
                    self.alerts["drift"] += 1
                    log.warning(
                        "exit-layer drift: E[l] %.2f vs %.2f at calibration (more than %.1f layers)",
                        self._expected(),
                        ref["achieved"]["expected_exit_layer"],
                        self.cfg.drift_layers,
                    )

    def _expected(self) -> float:
        return float((np.arange(1, self.L + 1) * self.hist).sum() / max(1, self.hist.sum()))

    def shadow(self, exit_emb: np.ndarray, full_emb: np.ndarray) -> None:
        """Rows encoded both ways; updates the agreement and, with fallback on, the state."""
        with self.lock:
            self.shadow_exit.extend(np.asarray(exit_emb))
            self.shadow_full.extend(np.asarray(full_emb))
            self.shadow_rows += len(exit_emb)
            if len(self.shadow_exit) < 11:
                return
            nn, cos = agreement(np.stack(self.shadow_exit), np.stack(self.shadow_full))
            b = self.cfg.budget
            below = (b.nn10 is not None and nn < b.nn10) or (b.mean_cosine is not None and cos < b.mean_cosine)
            clear = (b.nn10 is None or nn >= b.nn10 + self.cfg.recover_margin) and (
                b.mean_cosine is None or cos >= b.mean_cosine + self.cfg.recover_margin
            )
            if below:
                self.alerts["agreement"] += 1
                log.warning(
                    "shadow check below budget: NN@10 %.3f, cosine %.3f over the last %d rows",
                    nn,
                    cos,
                    len(self.shadow_exit),
                )
            if self.cfg.fallback and below and not self.fallback_active:
                self.fallback_active = True
                self.switches += 1
                log.warning("falling back to %s until the shadow agreement recovers", self.cfg.fallback_exit.strategy)
            elif self.cfg.fallback and clear and self.fallback_active:
                self.fallback_active = False
                self.switches += 1
                log.warning("shadow agreement recovered (NN@10 %.3f, cosine %.3f): early exit back on", nn, cos)

    def stats(self) -> dict:
        with self.lock:
            agree = None
            if len(self.shadow_exit) >= 11:
                nn, cos = agreement(np.stack(self.shadow_exit), np.stack(self.shadow_full))
                agree = {"nn10": nn, "mean_cosine": cos, "rows": len(self.shadow_exit)}
            return {
                "rows": self.rows,
                "exit_histogram": self.hist.tolist(),
                "exit_rate": float(self.hist[:-1].sum() / max(1, self.rows)),
                "expected_exit_layer": self._expected() if self.rows else None,
                "shadow_rows": self.shadow_rows,
                "shadow_agreement": agree,
                "alerts": dict(self.alerts),
                "fallback_active": self.fallback_active,
                "fallback_switches": self.switches,
            }


class MonitoredForward:
    """A model's ``forward`` with an :class:`ExitMonitor` around it (what :func:`attach_monitor`
    installs): counts each batch's exit layers, re-encodes a sampled share of batches the
    other way (shadow check: full depth while exiting, the exit rule during a fallback), and
    during a fallback serves the monitor's fallback rule unless the call names its own."""

    def __init__(self, model: Any, monitor: ExitMonitor, forward: Any) -> None:
        self.model, self.monitor, self.inner = model, monitor, forward

    def __call__(self, input: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mon, forward = self.monitor, self.inner
        if self.model.training:
            return forward(input, **kwargs)
        if mon.fallback_active and "exit" not in kwargs:
            kwargs["exit"] = mon.cfg.fallback_exit
        shadow = mon.wants_shadow()
        original = dict(input) if shadow else None  # the modules add keys to the dict they get
        out = forward(input, **kwargs)
        mon.observe(out["exit_layer"].cpu().numpy())
        if shadow:
            other_rule = self.model.exit_config if mon.fallback_active else ExitConfig(strategy="none")
            other = forward(original, exit=other_rule)["sentence_embedding"].float().cpu().numpy()
            served = out["sentence_embedding"].float().cpu().numpy()
            mon.shadow(*((other, served) if mon.fallback_active else (served, other)))
        return out


def attach_monitor(model: Any, monitor: ExitMonitor | None = None) -> ExitMonitor:
    """Serve ``model`` (an :class:`leap.serving.model.ExitSentenceTransformer`) under ``monitor``
    (default: :meth:`ExitMonitor.for_model`); every ``encode``-family call goes through it.
    Returns the monitor; :func:`detach_monitor` restores the plain ``forward``."""
    if not callable(getattr(model, "forward", None)) or not hasattr(model, "exit_module"):
        raise LeapError("a monitor wraps an ExitSentenceTransformer's forward; load the model with leap")
    detach_monitor(model)
    monitor = monitor or ExitMonitor.for_model(model)
    if model.num_layers != monitor.L:
        raise LeapError(f"the monitor counts {monitor.L} layers; the model has {model.num_layers}")
    model.forward = MonitoredForward(model, monitor, model.forward)
    return monitor


def detach_monitor(model: Any) -> ExitMonitor | None:
    """Remove the monitor :func:`attach_monitor` installed (if any) and return it."""
    wrapped = model.__dict__.get("forward")
    if isinstance(wrapped, MonitoredForward):
        del model.__dict__["forward"]
        return wrapped.monitor
    return None


def monitor_of(model: Any) -> ExitMonitor | None:
    """The monitor serving ``model``, or None."""
    wrapped = model.__dict__.get("forward")
    return wrapped.monitor if isinstance(wrapped, MonitoredForward) else None
