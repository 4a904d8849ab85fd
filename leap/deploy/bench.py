"""Wall-clock latency of full, exit, monitor-only and truncated passes (paper Table 7, sec 4.7).

Inputs are tokenised before timing (tokenisation excluded, as the paper does). Every path
is the model's own sentence-transformers ``forward`` (Transformer -> Pooling -> Normalize)
on the same pre-tokenised batches, with a different exit rule:

* ``full``: strategy ``none`` (exactly ``SentenceTransformer.forward``);
* ``exit``: the exit rule;
* ``monitor``: the exit loop with every check but no exit (``monitor_only``), so
  ``monitor / full - 1`` is the monitoring overhead;
* ``truncate@l``: every row stops at layer ``l`` (static truncation, the frontier's
  alternative), for the layers asked for.

Timing uses ``torch.utils.benchmark.Timer`` (CUDA synchronisation, thread count). The
paths are interleaved round by round, in rotating order, so that drift (thermal, other
load) affects all alike. Each row reports the median time per path, its interquartile
range over rounds, and every speedup with a 95% interval from the per-round ratios
(paired, a t-interval on their logarithms).
"""

from __future__ import annotations

import math
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy import stats

from leap.core.exit_config import ExitConfig
from leap.errors import LeapError


@dataclass(frozen=True)
class BenchConfig:
    """What to time. Defaults follow the paper's protocol: 50 warm-up and 200 timed calls.

    Attributes:
        rounds: the timed calls are split into this many interleaved rounds.
        truncate_layers: layers at which static truncation is also timed (``()``: none).
        tight: stop early, after at least :data:`MIN_ROUNDS` rounds, once every path's time
            relative to full depth has a 95% interval within ``tight`` of its median (for
            example 0.02: within 2%); ``None`` runs every round.
    """

    batch_sizes: tuple[int, ...] = (1, 8, 32)
    warmup: int = 50
    iters: int = 200
    rounds: int = 10
    threads: int | None = None  # CPU only; default: all cores torch sees
    n_batches: int = 16  # distinct pre-tokenised batches cycled through per batch size
    truncate_layers: tuple[int, ...] = ()
    seed: int = 0
    tight: float | None = None

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise LeapError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if self.warmup < 0 or self.iters < 1:
            raise LeapError(f"need warmup >= 0 and iters >= 1, got warmup={self.warmup} iters={self.iters}")
        if not 1 <= self.rounds <= self.iters:
            raise LeapError(f"rounds must lie in 1..iters ({self.iters}), got {self.rounds}")
        if self.tight is not None and not 0 < self.tight < 1:
            raise LeapError(f"tight must lie in (0, 1) (a relative half-width such as 0.02), got {self.tight}")


MIN_ROUNDS = 4
"""Rounds every path is timed before an early stop (:attr:`BenchConfig.tight`) is considered."""


def is_tight(times: dict[str, list[float]], tight: float) -> bool:
    """Every path's per-round time relative to the first path's has a 95% interval
    (:func:`ratio_interval`) whose half-width is within ``tight`` of its median."""
    names = list(times)
    for n in names[1:]:
        mid, lo, hi = ratio_interval(times[n], times[names[0]])
        if (hi - lo) / 2 > tight * mid:
            return False
    return True


def environment(device: torch.device) -> dict:
    """Device, thread count and library versions recorded beside every timing."""
    import sentence_transformers
    import transformers

    import leap

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
    return {
        "device": device.type,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "leap": leap.__version__,
        },
    }


def make_batches(model: Any, sentences: list[str], batch_size: int, n_batches: int, seed: int) -> list[dict]:
    """Pre-tokenised feature dicts of random sentences (seeded), on the model's device."""
    if not sentences:
        raise LeapError("no sentences to time")
    rng = random.Random(seed)
    return [
        model.features([sentences[rng.randrange(len(sentences))] for _ in range(batch_size)]) for _ in range(n_batches)
    ]


def time_paths(
    paths: dict[str, Callable[[dict], object]],
    batches: list[dict],
    warmup: int,
    iters: int,
    rounds: int,
    threads: int,
    tight: float | None = None,
) -> dict[str, list[float]]:
    """Per-round mean milliseconds of each path, rounds interleaved in rotating order; with
    ``tight``, the rounds stop once :func:`is_tight` holds (after :data:`MIN_ROUNDS`)."""
    from torch.utils.benchmark import Timer

    names = list(paths)
    state = {"i": 0}

    def call(name: str) -> None:
        feats = batches[state["i"] % len(batches)]
        state["i"] += 1
        paths[name](feats)

    timers = {n: Timer(stmt="call(name)", globals={"call": call, "name": n}, num_threads=threads) for n in names}
    for n in names:
        if warmup:
            timers[n].timeit(warmup)
    per_round = max(1, iters // rounds)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names)
        for n in names[shift:] + names[:shift]:
            out[n].append(timers[n].timeit(per_round).mean * 1e3)
        if tight is not None and r + 1 >= MIN_ROUNDS and is_tight(out, tight):
            break
    return out


def ratio_interval(num: list[float], den: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(median ratio, low, high)`` of paired per-round times ``num / den``: a t-interval on
    the mean log-ratio, back-transformed (one round gives no interval)."""
    r = np.log(np.asarray(num) / np.asarray(den))
    mid = float(np.exp(np.median(r)))
    if r.size < 2 or float(r.std(ddof=1)) == 0.0:
        return mid, mid, mid
    lo, hi = stats.t.interval(level, df=r.size - 1, loc=r.mean(), scale=stats.sem(r))
    return mid, float(math.exp(lo)), float(math.exp(hi))


def bench_row(
    batch_size: int, times: dict[str, list[float]], layers: np.ndarray, n_layers: int, truncate_layers: Sequence[int]
) -> dict:
    """One Table 7 row from the interleaved timings of the paths (``full``, ``exit``,
    ``monitor``, ``truncate@l``) and the exit layers of the timed samples."""
    med = {k: float(np.median(v)) for k, v in times.items()}
    iqr = {k: float(np.subtract(*np.percentile(v, [75, 25]))) for k, v in times.items()}
    speedup, s_lo, s_hi = ratio_interval(times["full"], times["exit"])
    over, o_lo, o_hi = ratio_interval(times["monitor"], times["full"])
    reduction = n_layers / float(layers.mean())
    row = {
        "batch_size": batch_size,
        "full_ms": med["full"],
        "exit_ms": med["exit"],
        "monitor_ms": med["monitor"],
        "full_iqr_ms": iqr["full"],
        "exit_iqr_ms": iqr["exit"],
        "monitor_iqr_ms": iqr["monitor"],
        "speedup": speedup,
        "speedup_ci95": [s_lo, s_hi],
        "layer_reduction": reduction,
        "efficiency": speedup / reduction,
        "monitoring_overhead": over - 1.0,
        "monitoring_overhead_ci95": [o_lo - 1.0, o_hi - 1.0],
        "mean_exit_layer": float(layers.mean()),
        "truncate": {},
    }
    for l in truncate_layers:
        sp, lo, hi = ratio_interval(times["full"], times[f"truncate@{l}"])
        row["truncate"][str(l)] = {
            "ms": med[f"truncate@{l}"],
            "speedup": sp,
            "speedup_ci95": [lo, hi],
            "layer_reduction": n_layers / l,
        }
    return row


def bench(model: Any, sentences: list[str], config: BenchConfig, exit: ExitConfig | None = None) -> dict:
    """Table 7 on the hardware at hand: one row per batch size.

    ``model`` is a :class:`leap.serving.model.ExitSentenceTransformer`. Returns ``rows`` with
    ``batch_size``, median ``full_ms, exit_ms, monitor_ms`` (and their IQR), ``speedup =
    full/exit`` with ``speedup_ci95``, ``layer_reduction = L / E[l]`` of the timed samples,
    ``efficiency = speedup / layer_reduction``, ``monitoring_overhead = monitor/full - 1``
    with its interval, ``mean_exit_layer``, and ``truncate`` (``layer -> ms, speedup``);
    plus ``exit`` (the rule) and the :func:`environment` record.
    """
    cfg = model.exit_module.resolve(exit)
    device = model.device
    if device.type == "cpu" and config.threads:
        torch.set_num_threads(config.threads)
    threads = torch.get_num_threads()
    L = model.num_layers
    none = ExitConfig(strategy="none")
    monitor = replace(
        cfg,
        strategy="convergence" if cfg.strategy in ("none", "truncate") else cfg.strategy,
        min_layer=1,
        monitor_only=True,
    )

    def path(rule: ExitConfig) -> Callable[[dict], object]:
        @torch.inference_mode()
        def run(feats: dict) -> object:
            return model.forward(dict(feats), exit=rule)["sentence_embedding"]

        return run

    paths = {"full": path(none), "exit": path(cfg), "monitor": path(monitor)}
    for l in config.truncate_layers:
        if not 1 <= l < L:
            raise LeapError(f"truncate layer {l} outside 1..{L - 1}")
        paths[f"truncate@{l}"] = path(ExitConfig(strategy="truncate", min_layer=l))
    rows = []
    for bs in config.batch_sizes:
        batches = make_batches(model, sentences, bs, config.n_batches, config.seed + bs)
        with torch.inference_mode():
            layers = np.concatenate([model.forward(dict(b), exit=cfg)["exit_layer"].cpu().numpy() for b in batches])
        t = time_paths(paths, batches, config.warmup, config.iters, config.rounds, threads, config.tight)
        rows.append(bench_row(bs, t, layers, L, config.truncate_layers) | {"rounds_timed": len(t["full"])})
    env = environment(device)
    env["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    return {
        "model": getattr(model, "source", None),
        "num_layers": L,
        "exit": cfg.to_dict(),
        "warmup": config.warmup,
        "iters": config.iters,
        "rounds": config.rounds,
        "tight": config.tight,
        "timer": "torch.utils.benchmark",
        "rows": rows,
        **env,
    }


def interleaved_ms(
    paths: dict[str, Callable[[list[str], int], Any]], sentences: list[str], batch_size: int, rounds: int
) -> dict[str, list[float]]:
    """End-to-end milliseconds per sentence (tokenisation included) of each serving path, one
    value per round; rounds interleaved in rotating order so that drift in the machine's speed
    spreads over every path. ``paths``: name -> ``encode(sentences, batch_size)``; one warm-up
    call each first."""
    names = list(paths)
    for n in names:  # warm-up
        paths[n](sentences[: max(batch_size, 8)], batch_size)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            paths[n](sentences, batch_size)
            out[n].append((time.perf_counter() - t0) * 1e3 / len(sentences))
    return out
