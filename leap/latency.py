"""Wall-clock latency of full, exit and monitor-only passes (paper Table 7, sec 4.7).

Inputs are tokenised before timing (tokenisation excluded, as the paper does). Three
paths are timed on the same pre-tokenised batches:

* ``full``: the model's own ``forward`` followed by mean pooling and normalisation;
* ``exit``: :meth:`EarlyExitEncoder.forward_exit` with the exit rule;
* ``monitor``: the exit loop with the check at every layer but exits disabled
  (``monitor_only``), so ``monitor / full - 1`` is the monitoring overhead.

On GPU each call is timed with CUDA events (default 50 warm-up, 200 timed iterations);
on CPU with ``time.perf_counter`` and a fixed ``torch`` thread count. The paths are
interleaved round by round, in rotating order, so that drift (thermal, other load)
affects all three alike.
"""

from __future__ import annotations

import platform
import random
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from leap.early_exit import EarlyExitEncoder, ExitConfig
from leap.errors import LeapError
from leap.pooling import mean_pool


@dataclass(frozen=True)
class BenchConfig:
    """What to time. Defaults follow SPEC "Metrics" (Latency)."""

    batch_sizes: tuple[int, ...] = (1, 8, 32)
    warmup: int = 50
    iters: int = 200
    threads: int | None = None  # CPU only; default: all cores torch sees
    n_batches: int = 16  # distinct pre-tokenised batches cycled through per batch size
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise LeapError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if self.warmup < 0 or self.iters < 1:
            raise LeapError(f"need warmup >= 0 and iters >= 1, got warmup={self.warmup} iters={self.iters}")


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


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Returns ``time(fn) -> milliseconds`` for one call of ``fn``."""
    if device.type == "cuda":

        def time_cuda(fn: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return float(start.elapsed_time(end))

        return time_cuda

    def time_cpu(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    return time_cpu


def make_batches(
    encoder: EarlyExitEncoder, sentences: list[str], batch_size: int, n_batches: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pre-tokenised ``(input_ids, attention_mask)`` batches of random sentences (seeded)."""
    if not sentences:
        raise LeapError("no sentences to time")
    rng = random.Random(seed)
    out = []
    for _ in range(n_batches):
        chosen = [sentences[rng.randrange(len(sentences))] for _ in range(batch_size)]
        feats = encoder.tokenize(chosen)
        out.append((feats["input_ids"].to(encoder.device), feats["attention_mask"].to(encoder.device)))
    return out


def time_paths(
    paths: dict[str, Callable[[torch.Tensor, torch.Tensor], object]],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    warmup: int,
    iters: int,
) -> dict[str, list[float]]:
    """Interleaved timing: each round runs every path once on the same batch."""
    timer = _timer(device)
    names = list(paths)
    times: dict[str, list[float]] = {n: [] for n in names}
    for it in range(warmup + iters):
        ids, mask = batches[it % len(batches)]
        shift = it % len(names)
        for name in names[shift:] + names[:shift]:
            ms = timer(lambda: paths[name](ids, mask))
            if it >= warmup:
                times[name].append(ms)
    return times


def bench(encoder: EarlyExitEncoder, sentences: list[str], config: BenchConfig, exit: ExitConfig | None = None) -> dict:
    """Table 7 on the hardware at hand: one row per batch size.

    Returns a dict with ``rows`` (``batch_size, full_ms, exit_ms, monitor_ms`` and their
    std, ``speedup = full/exit``, ``layer_reduction = L / E[l]`` of the timed samples,
    ``efficiency = speedup / layer_reduction``, ``monitoring_overhead = monitor/full - 1``,
    ``mean_exit_layer``), ``exit`` (the rule) and the :func:`environment` record.
    """
    cfg = exit or encoder.exit
    device = encoder.device
    if device.type == "cpu" and config.threads:
        torch.set_num_threads(config.threads)
    monitor = replace(cfg, min_layer=1, monitor_only=True)
    model = encoder.model

    @torch.inference_mode()
    def full(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        return F.normalize(mean_pool(hidden, mask).float(), dim=-1)

    paths = {
        "full": full,
        "exit": lambda ids, mask: encoder.forward_exit(ids, mask, exit=cfg),
        "monitor": lambda ids, mask: encoder.forward_exit(ids, mask, exit=monitor),
    }
    rows = []
    for bs in config.batch_sizes:
        batches = make_batches(encoder, sentences, bs, config.n_batches, config.seed + bs)
        layers = np.concatenate([encoder.forward_exit(i, m, exit=cfg)[1].cpu().numpy() for i, m in batches])
        t = time_paths(paths, batches, device, config.warmup, config.iters)
        mean = {k: statistics.fmean(v) for k, v in t.items()}
        std = {k: statistics.pstdev(v) for k, v in t.items()}
        speedup = mean["full"] / mean["exit"]
        reduction = encoder.num_layers / float(layers.mean())
        rows.append(
            {
                "batch_size": bs,
                "full_ms": mean["full"],
                "exit_ms": mean["exit"],
                "monitor_ms": mean["monitor"],
                "full_std_ms": std["full"],
                "exit_std_ms": std["exit"],
                "monitor_std_ms": std["monitor"],
                "speedup": speedup,
                "layer_reduction": reduction,
                "efficiency": speedup / reduction,
                "monitoring_overhead": mean["monitor"] / mean["full"] - 1.0,
                "mean_exit_layer": float(layers.mean()),
            }
        )
    env = environment(device)
    env["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    return {
        "model": encoder.name,
        "num_layers": encoder.num_layers,
        "exit": asdict(cfg),
        "warmup": config.warmup,
        "iters": config.iters,
        "timer": "cuda_events" if device.type == "cuda" else "perf_counter",
        "rows": rows,
        **env,
    }


def run_bench(model: str, out_json: str, exit: dict, bench_cfg: dict, threads: int | None = None) -> dict:
    """Table 7 for one trained student -> JSON (the workflow's latency rule)."""
    from leap.diagnostic import builtin_sentences
    from leap.files import write_json

    device = bench_cfg.get("device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise LeapError("latency.device is cuda but no GPU is visible; set latency.device: cpu")
    enc = EarlyExitEncoder.from_pretrained(str(model), exit=ExitConfig(**exit), device=device, dtype=bench_cfg.get("dtype"))
    cfg = BenchConfig(batch_sizes=tuple(bench_cfg["batch_sizes"]), warmup=bench_cfg["warmup"], iters=bench_cfg["iters"],
                      threads=threads if device == "cpu" else None)
    res = bench(enc, builtin_sentences(), cfg)
    write_json(out_json, res)
    return res
