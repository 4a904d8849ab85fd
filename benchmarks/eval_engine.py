"""The evaluation engine: every layer's pooled vectors of one pass, torch against ONNX Runtime fp32.

What ``evaluation.engine: onnx`` changes in the workflow (:mod:`leap.workflow.eval_engine`),
measured side by side in one process on one thread: the STS-B dev sentences through
``layer_embeddings`` (batch 64) on torch and through :class:`CheckedLayerVectors` (the export
into a scratch copy, the ONNX Runtime pass and the torch check on its sample all included),
for all-MiniLM-L6-v2 and all-mpnet-base-v2 (``make mpnet``); the largest difference of the
two engines' vectors over every sentence and layer.

Usage:
  HF_HUB_OFFLINE=1 python benchmarks/eval_engine.py --data-dir ../shared/data --out results/cpu/performance/eval_engine
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from leap.deploy.bench import environment
from leap.deploy.convert import convert
from leap.files import write_json, write_text
from leap.serving.sources import packaged_minilm_path
from leap.workflow.data import stsb_pairs
from leap.workflow.eval_engine import CheckedLayerVectors
from leap.workflow.evaluate import load_model, pair_index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--mpnet", default="models/all-mpnet-base-v2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="output prefix: <out>.json, <out>.md")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(a.threads)
    df = stsb_pairs("local:stsb", a.data_dir)
    sents = list(pair_index(df[df["split"] == "dev"])[0])
    rows = []
    for name, path in (("all-MiniLM-L6-v2", packaged_minilm_path()), ("all-mpnet-base-v2", Path(a.mpnet))):
        with tempfile.TemporaryDirectory() as tmp:
            folder = convert(path, Path(tmp) / "m")
            model = load_model(str(folder))
            t = time.perf_counter()
            ref = model.layer_embeddings(sents, batch_size=64)
            torch_s = time.perf_counter() - t
            checked = CheckedLayerVectors(load_model(str(folder)))
            t = time.perf_counter()
            got = checked.layer_embeddings(sents, batch_size=64)
            onnx_s = time.perf_counter() - t
        rows.append({
            "model": name, "sentences": len(sents), "torch_s": torch_s, "onnx_checked_s": onnx_s,
            "speedup": torch_s / onnx_s, "max_abs_diff_all": float((got - ref).abs().max()), "check": checked.checks[0],
        })  # fmt: skip
    write_json(f"{a.out}.json", {"rows": rows, "threads": a.threads, "machine": environment(torch.device("cpu"))})
    lines = [
        "# Evaluation passes: torch against ONNX Runtime fp32 (checked)",
        "",
        f"`HF_HUB_OFFLINE=1 python benchmarks/eval_engine.py --data-dir {a.data_dir} --out {a.out}`: every layer's "
        f"pooled vectors of the STS-B dev sentences, batch 64, {a.threads} thread(s); ONNX Runtime's time includes "
        "the export into a scratch copy and the torch check on its sample.",
        "",
        "| model | sentences | torch, s | ONNX Runtime + check, s | speed-up | max abs diff (all) | engine used |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['model']} | {r['sentences']} | {r['torch_s']:.1f} | {r['onnx_checked_s']:.1f} | {r['speedup']:.2f}x | "
        f"{r['max_abs_diff_all']:.1e} | {r['check']['engine']} |"
        for r in rows
    ]
    text = "\n".join(lines) + "\n"
    write_text(f"{a.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
