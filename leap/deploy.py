"""Deploying early exit safely (paper sec 5.3, App. A.4, G): calibrate the exit rule on the
user's own sentences, monitor the exit-layer distribution and the agreement with full
inference, fall back to full depth when quality degrades, and estimate when training pays.

* :func:`calibrate`: sweep theta (and ``l_min``, patience) on a sample and pick the fastest
  rule that meets a quality budget against full inference (:class:`Budget`): NN@10 overlap,
  mean cosine to the full embedding, and, with scored pairs, the Spearman drop.
  :func:`calibrate_folder` writes the chosen rule and a calibration record into the model
  folder (``leap_exit.json``).
* :class:`ExitMonitor`: running exit-layer statistics, an optional shadow check that
  re-encodes a fraction of requests at full depth, drift alerts against the calibration
  record, and an automatic fallback to full depth (off by default) that switches back when
  the shadow agreement recovers. :func:`attach_monitor` installs it around the model's
  ``forward`` (the model itself knows only its exit rule); :func:`detach_monitor` removes it.
* :func:`amortize`: the break-even of a training run from measured latencies and volume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leap import metrics
from leap.config import ExitConfig, read_exit_file
from leap.early_exit import simulate_exit
from leap.errors import LeapError

log = logging.getLogger(__name__)

DEFAULT_THETAS = (0.80, 0.83, 0.86, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


@dataclass(frozen=True)
class Budget:
    """How close to full inference an exit rule must stay (``None``: not checked; at least one
    criterion must be set, and only the ones set are checked).

    Attributes:
        nn10: minimum mean overlap of each sentence's 10 nearest neighbours under the exit
            embeddings with those under full-depth embeddings (paper B.5).
        mean_cosine: minimum mean cosine between a sentence's exit and full embeddings.
        spearman_drop: maximum drop of Spearman on scored pairs (exit vs full).
    """

    nn10: float | None = None
    mean_cosine: float | None = None
    spearman_drop: float | None = None

    def __post_init__(self) -> None:
        if self.nn10 is None and self.mean_cosine is None and self.spearman_drop is None:
            raise LeapError("a budget needs at least one of nn10, mean_cosine, spearman_drop")
        for name in ("nn10", "mean_cosine"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 1:
                raise LeapError(f"budget {name} must lie in [0, 1], got {v}")
        if self.spearman_drop is not None and self.spearman_drop < 0:
            raise LeapError(f"budget spearman_drop must be >= 0, got {self.spearman_drop}")

    def describe(self) -> str:
        """Every active criterion, e.g. ``NN@10 >= 0.95, Spearman drop <= 0.01``."""
        parts = []
        if self.nn10 is not None:
            parts.append(f"NN@10 >= {self.nn10:g}")
        if self.mean_cosine is not None:
            parts.append(f"mean cosine >= {self.mean_cosine:g}")
        if self.spearman_drop is not None:
            parts.append(f"Spearman drop <= {self.spearman_drop:g}")
        return ", ".join(parts)

    def met(self, row: dict) -> bool:
        return (
            (self.nn10 is None or row["nn10"] >= self.nn10)
            and (self.mean_cosine is None or row["mean_cosine"] >= self.mean_cosine)
            and (self.spearman_drop is None or row.get("spearman_drop", np.inf) <= self.spearman_drop)
        )


DEFAULT_BUDGET = Budget(nn10=metrics.DEFAULT_NN10)
"""The budget when none is named: NN@10 agreement with full inference >= 0.95 (paper B.5)."""


def agreement(emb: np.ndarray, full: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(mean NN@k overlap, mean cosine) of exit embeddings against full-depth ones."""
    k = min(k, len(emb) - 1)
    nn = float(metrics.nn_overlap(emb, full, k).mean()) if k >= 1 else 1.0
    cos = float((F.normalize(torch.as_tensor(emb), dim=-1) * F.normalize(torch.as_tensor(full), dim=-1)).sum(-1).mean())
    return nn, cos


def calibrate(
    model: Any,
    sentences: Sequence[str],
    budget: Budget = DEFAULT_BUDGET,
    thetas: Sequence[float] = DEFAULT_THETAS,
    min_layers: Sequence[int] | None = None,
    patiences: Sequence[int] = (1,),
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    batch_size: int = 64,
) -> dict:
    """The fastest exit rule (lowest E[l]) on ``sentences`` that meets ``budget``.

    Args:
        model: :class:`leap.exit_model.ExitSentenceTransformer`.
        sentences: the user's own sentences (held out, in domain).
        min_layers: the ``l_min`` values tried (default: the model's own and one above).
        pairs: ``(i1, i2, gold)`` row indices into ``sentences`` and scores, for the
            Spearman budget.

    Returns:
        ``{"chosen": ExitConfig | None, "sweep": [rows], "budget": ..., "n": ...}``; each row has
        ``strategy, theta, patience, min_layer, exit_rate, expected_exit_layer,
        layer_reduction, nn10, mean_cosine`` (and ``spearman``, ``spearman_drop``) and
        ``meets_budget``. ``chosen`` is ``None`` when no rule meets the budget (full depth then).
    """
    sents = [s for s in sentences if s.strip()]
    if len(sents) < 11:
        raise LeapError(f"calibration needs at least 11 non-empty sentences (NN@10), got {len(sents)}")
    L = model.num_layers
    v = model.layer_embeddings(sents, batch_size=batch_size)
    ev = model.embed_vectors(v)
    full = F.normalize(ev[-1].float(), dim=-1).numpy()
    base = model.exit_config
    lmins = list(min_layers) if min_layers else sorted({base.min_layer, min(L - 1, base.min_layer + 1)})
    full_sp = None
    if pairs is not None:
        from scipy.stats import spearmanr

        i1, i2, gold = pairs
        full_sp = float(spearmanr((full[i1] * full[i2]).sum(-1), gold).statistic)
    rows = []
    for lmin in lmins:
        for k in patiences:
            for th in thetas:
                cfg = ExitConfig(strategy="convergence", theta=float(th), patience=int(k), min_layer=int(lmin))
                emb, layers = simulate_exit(v, cfg, embed_vectors=ev)
                nn, cos = agreement(emb, full)
                row = {
                    **cfg.to_dict(),
                    "exit_rate": metrics.exit_rate(layers, L),
                    "expected_exit_layer": metrics.expected_exit_layer(layers),
                    "layer_reduction": metrics.layer_reduction(layers, L),
                    "nn10": nn,
                    "mean_cosine": cos,
                }
                if pairs is not None:
                    from scipy.stats import spearmanr

                    sp = float(spearmanr((emb[i1] * emb[i2]).sum(-1), gold).statistic)
                    row |= {"spearman": sp, "spearman_drop": full_sp - sp}
                row["meets_budget"] = budget.met(row)
                rows.append(row)
    ok = [r for r in rows if r["meets_budget"] and r["exit_rate"] > 0]
    best = min(ok, key=lambda r: (r["expected_exit_layer"], -r["nn10"])) if ok else None
    chosen = None
    if best is not None:
        chosen = ExitConfig.from_dict(
            {k: best[k] for k in ("strategy", "theta", "patience", "min_layer", "pabee_theta", "pabee_patience")}
        )
    return {
        "chosen": chosen,
        "sweep": rows,
        "budget": dataclasses.asdict(budget),
        "budget_text": budget.describe(),
        "n": len(sents),
        "spearman_full": full_sp,
    }


def calibration_record(result: dict, sentences: Sequence[str], source: str) -> dict:
    """What is saved beside the chosen rule: data hash and size, budget, achieved figures, date."""
    sha = hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()
    chosen = result["chosen"]
    row = next(
        (
            r
            for r in result["sweep"]
            if chosen is not None
            and r["theta"] == chosen.theta
            and r["min_layer"] == chosen.min_layer
            and r["patience"] == chosen.patience
        ),
        None,
    )
    return {
        "calibration": {
            "data": source,
            "data_sha256": sha,
            "n_sentences": result["n"],
            "budget": result["budget"],
            "achieved": row,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    }


def calibrate_folder(
    folder: str,
    sentences: Sequence[str],
    budget: Budget = DEFAULT_BUDGET,
    source: str = "",
    pairs: tuple | None = None,
    **kwargs: Any,
) -> dict:
    """Calibrate the exit-enabled model in ``folder`` and write the chosen rule and the
    calibration record into its ``leap_exit.json`` (nothing is written when no rule meets
    the budget: the result says so)."""
    from leap.exit_model import load_exit_model

    model = load_exit_model(folder, device="cpu", backend="torch")
    result = calibrate(model, sentences, budget, pairs=pairs, **kwargs)
    if result["chosen"] is not None:
        record = calibration_record(result, sentences, source)
        _, layers = model.encode_with_exit_layers([s for s in sentences if s.strip()], exit=result["chosen"])
        record["calibration"]["exit_distribution"] = metrics.exit_distribution(layers, model.num_layers).tolist()
        result["chosen"].save(folder, extra=record)
        result["record"] = record["calibration"]
    return result


# -- monitoring and fallback ---------------------------------------------------------------------------
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
        """A monitor for ``model`` with its calibration record (if its folder has one) as reference."""
        ref = None
        source = getattr(model, "source", None)
        if source:
            try:
                ref = (read_exit_file(source) or {}).get("calibration")
            except (LeapError, OSError):
                ref = None
        return cls(model.num_layers, config, ref)

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
    """Serve ``model`` (an :class:`leap.exit_model.ExitSentenceTransformer`) under ``monitor``
    (default: :meth:`ExitMonitor.for_model`); every ``encode``-family call goes through it.
    Returns the monitor; :func:`detach_monitor` restores the plain ``forward``."""
    if not callable(getattr(model, "forward", None)) or not hasattr(model, "exit_module"):
        raise LeapError("a monitor wraps the torch engine's forward; load the model with backend='torch'")
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


# -- amortization ------------------------------------------------------------------------------------
def amortize(
    requests_per_day: float, full_ms: float, exit_ms: float, train_device_hours: float, serving_devices: int = 1
) -> dict:
    """Break-even of a training run (paper App. A.4, G): the device time saved per request,
    ``(full_ms - exit_ms)``, against the one-time training cost in device-hours.

    Returns the saving per day in device-hours, the requests and days to break even (``None``
    when exit is not faster), and the speedup."""
    if min(requests_per_day, full_ms, exit_ms, train_device_hours) < 0 or serving_devices < 1:
        raise LeapError("amortize needs non-negative volume, latencies and training cost, and >= 1 serving device")
    saved_ms = full_ms - exit_ms
    out = {
        "speedup": full_ms / exit_ms if exit_ms else None,
        "saved_ms_per_request": saved_ms,
        "train_device_hours": train_device_hours,
    }
    if saved_ms <= 0:
        return out | {
            "saved_device_hours_per_day": 0.0,
            "break_even_requests": None,
            "break_even_days": None,
            "verdict": "early exit is not faster on this hardware: training never pays back",
        }
    per_day = requests_per_day * saved_ms / 3.6e6
    requests = train_device_hours * 3.6e6 / saved_ms
    days = requests / requests_per_day if requests_per_day else None
    return out | {
        "saved_device_hours_per_day": per_day,
        "break_even_requests": requests,
        "break_even_days": days,
        "verdict": f"pays back after {requests:,.0f} requests"
        + (f" ({days:.1f} days at {requests_per_day:,.0f} a day)" if days is not None else ""),
    }


__all__ = [
    "Budget",
    "ExitMonitor",
    "MonitorConfig",
    "MonitoredForward",
    "agreement",
    "amortize",
    "attach_monitor",
    "calibrate",
    "calibrate_folder",
    "detach_monitor",
    "monitor_of",
]
