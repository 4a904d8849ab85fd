"""The workflow's measuring jobs as functions over the library: each loads a model, measures it
with :mod:`leap.deploy` and writes one typed record (:mod:`leap.workflow.records`) atomically.

* :func:`run_bench`: Table 7 (latency of full depth, exit, monitor-only and truncation);
* :func:`diagnose_to_json`: the exit diagnostic of a published or trained model (sec 5.2);
* :func:`run_serving_paths`: every serving path of a trained model on STS-B dev pairs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from leap.core.builtin import builtin_sentences
from leap.core.exit_config import ExitConfig
from leap.deploy.bench import BenchConfig, bench, environment
from leap.deploy.calibrate import Budget
from leap.deploy.diagnose import diagnose
from leap.deploy.serving_paths import measure_paths
from leap.errors import LeapError
from leap.files import write_json
from leap.serving.model import load_exit_model
from leap.workflow.evaluate import pair_index
from leap.workflow.records import write_record


def run_bench(model: str, out_json: str, exit: dict, bench_cfg: dict, threads: int | None = None) -> dict:
    """Table 7 for one model -> JSON (the workflow's latency rule), truncation at every layer
    from ``l_min`` to ``L - 1`` timed beside (the frontier's speed axis)."""

    device = bench_cfg.get("device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise LeapError("latency.device is cuda but no GPU is visible; set latency.device: cpu")
    m = load_exit_model(str(model), device=device, dtype=bench_cfg.get("dtype"), backend="torch")
    rule = m.exit_module.resolve(ExitConfig.from_dict(exit))
    cfg = BenchConfig(
        batch_sizes=tuple(bench_cfg["batch_sizes"]),
        warmup=bench_cfg["warmup"],
        iters=bench_cfg["iters"],
        rounds=min(bench_cfg.get("rounds", 10), bench_cfg["iters"]),
        threads=threads if device == "cpu" else None,
        truncate_layers=tuple(range(rule.min_layer, m.num_layers)),
        tight=bench_cfg.get("tight"),
    )
    res = bench(m, builtin_sentences(), cfg, exit=rule)
    write_record(out_json, res)
    return res


def diagnose_to_json(
    model: str,
    output: str,
    theta: float = 0.95,
    patience: int = 1,
    min_layer: int | None = None,
    overhead_iters: int = 30,
    sentences_file: str | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> dict:
    """Load ``model`` (hub id, folder or ``packaged:...``), run :func:`diagnose`, write JSON atomically."""

    if threads:
        torch.set_num_threads(threads)
    cfg = ExitConfig(theta=theta, patience=patience, min_layer=min_layer)
    m = load_exit_model(model, exit=cfg, device=device, backend="torch")
    if sentences_file:
        with open(sentences_file, encoding="utf-8") as fh:
            sentences = [line.rstrip("\n") for line in fh if line.strip()]
    else:
        sentences = builtin_sentences()
    out = diagnose(m, sentences, exit=cfg, overhead_iters=overhead_iters)
    out["model_ref"] = model
    write_record(output, out)
    return out


def run_serving_paths(
    model: str | os.PathLike,
    pairs_path: str | os.PathLike,
    out_json: str | os.PathLike,
    latency: dict[str, Any],
    threads: int | None = None,
) -> dict[str, Any]:
    """The workflow's serving-paths stage: every path of a trained model (torch and ONNX
    Runtime int8; full depth, every cut, exit over ``latency["serving_thetas"]``) on a seeded
    sample of ``latency["serving_pairs"]`` STS-B dev pairs -> JSON (the frontier figure's
    speed panels). The model is exported in a scratch copy; its own folder is not touched."""

    df = pd.read_parquet(pairs_path)
    dev = df[df["split"] == "dev"]
    if dev.empty:
        raise LeapError(f"{pairs_path} has no dev split; the serving paths are measured on STS-B dev pairs")
    n = int(latency["serving_pairs"])
    dev = dev.sample(n=n, random_state=0) if len(dev) > n else dev
    sents, i1, i2 = pair_index(dev)
    batch_sizes = tuple(latency["serving_batch_sizes"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        shutil.copytree(model, folder, ignore=shutil.ignore_patterns("onnx"))
        res = measure_paths(
            folder,
            sents,
            Budget(nn10=0.0),  # nothing is chosen here: every path is reported
            pairs=(i1, i2, dev["score"].to_numpy(float)),
            thetas=tuple(latency["serving_thetas"]),
            batch_sizes=batch_sizes,
            threads=threads,
            backends=("torch", "onnx-int8"),
        )
    out = {
        "benchmark": "STS-B dev",
        "n_pairs": len(dev),
        "n_sentences": len(sents),
        "batch_sizes": list(batch_sizes),
        "threads": threads,
        "skipped": res.skipped,
        "machine": environment(torch.device("cpu")),
        "paths": [p.to_dict() for p in res.paths],
    }
    write_json(out_json, out)
    return out
