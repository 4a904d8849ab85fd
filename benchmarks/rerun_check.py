"""Reproducibility of a committed run: retrain one student from its recorded
``train_config.json`` on the same sentences and teacher cache, then compare the weights
(bitwise) and the STS-B scores with the ones the workflow wrote.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rerun_check.py results/cpu/baseline/seed0 \
        [--data results/cpu/data] [--cache results/cpu/teacher] [--threads 1]

Needs the run's model folder (not committed: run the workflow first). Same threads as
the workflow job (cpu.yaml: 1) for a bitwise comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from leap.core.exit_config import ExitConfig
from leap.training.config import TrainConfig
from leap.training.run import train
from leap.workflow.data import read_sentences
from leap.workflow.evaluate import run_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="results/<experiment>/<variant>/seed<k>")
    ap.add_argument("--data", type=Path, help="the experiment's data folder (default: ../../data from the run)")
    ap.add_argument("--cache", type=Path, help="the experiment's teacher cache (default: ../../teacher)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    data = a.data or a.run.parent.parent / "data"
    cache = a.cache or a.run.parent.parent / "teacher"
    conf = json.loads((a.run / "train_config.json").read_text())
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig.from_dict({k: v for k, v in conf.items() if k in names})
    old_eval = json.loads((a.run / "eval" / "stsb.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model = train(
            cfg,
            read_sentences(str(data / "sentences.parquet")),
            cache,
            tmp,
            teacher=conf["teacher"],
            threads=a.threads,
            progress_bar=False,
            exit=ExitConfig.from_dict(conf["exit"]) if "exit" in conf else None,
        )
        seconds = time.perf_counter() - t0
        old, new = load_file(str(a.run / "model" / "model.safetensors")), load_file(str(model / "model.safetensors"))
        same = old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
        diff = max(float((old[k] - new[k]).abs().max()) for k in old)
        ev = run_pairs(
            str(model), str(data / "stsb.parquet"), str(Path(tmp) / "stsb.json"), old_eval["exit"], threads=a.threads
        )
    o, n = old_eval["splits"]["test"], ev["splits"]["test"]
    print(f"{a.run}: retrained {conf['steps']} steps in {seconds:.0f} s ({a.threads} threads)")
    print(f"weights bitwise identical: {same} (max abs diff {diff:.2e})")
    print(
        f"STS-B test exit / full: committed {o['spearman_exit']:.6f} / {o['spearman_full']:.6f}, "
        f"rerun {n['spearman_exit']:.6f} / {n['spearman_full']:.6f}"
    )


if __name__ == "__main__":
    main()
