"""The serving paths of a run's trained students at other thread counts than the workflow's.

The workflow's ``serving_paths`` rule times each timed student at the config's thread count
(``threads``: 2 for ``config/cpu.yaml``). This script times the same students, with the same
code (:func:`leap.workflow.jobs.run_serving_paths`) and the same settings (the config's
``latency`` block: pairs, thetas, batch sizes), at the thread counts given, on the model
folders the run left on disk (``<results>/<variant>/seed<seed>/model``, or the same layout
under ``--models`` for folders copied aside while the run went on: a run with
``keep_intermediates: false`` deletes each model after its last reader; a variant whose folder
is gone is skipped and named). The STS-B pairs are extracted from the data folder as
the workflow extracts them; a check compares each student's full-depth torch Spearman with the
workflow's own file, so a different sample of pairs cannot pass unnoticed.

Usage:
  HF_HUB_OFFLINE=1 python benchmarks/serving_paths_students.py results/cpu --config config/cpu.yaml \\
      --data-dir ../shared/data --threads 1 --out results/cpu/performance/serving_paths_students
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import yaml
from readme_results import SERVING_HEADER, serving_rows  # benchmarks/, beside this script

from leap.files import write_json, write_text
from leap.workflow.data import stsb_pairs
from leap.workflow.jobs import run_serving_paths
from leap.workflow.plan import Plan

log = logging.getLogger("serving_paths_students")


def markdown(results: list[dict], command: str) -> str:
    """Per student and thread count, the README's serving rows (:func:`readme_results.serving_rows`)."""
    lines = ["# Serving paths of the CPU-scale students", "", f"`{command}`", "", *SERVING_HEADER]
    for r in results:
        lines += serving_rows(r["variant"], r["record"])
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="the run's results folder, e.g. results/cpu")
    ap.add_argument("--config", required=True, help="the run's config file, e.g. config/cpu.yaml")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--models", type=Path, help="model folders as <models>/<variant>/seed<seed>/model (default: results)"
    )
    ap.add_argument("--variants", nargs="+", help="these timed students only (default: the config's latency variants)")
    ap.add_argument("--out", required=True, help="output prefix: <out>.json and <out>.md")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = yaml.safe_load(Path(a.config).read_text(encoding="utf-8")) | {"data_dir": a.data_dir}
    plan = Plan(config)
    latency = plan.latency
    pairs = stsb_pairs(plan.cfg.data.stsb, a.data_dir)
    results, missing = [], []
    with tempfile.TemporaryDirectory() as tmp:
        parquet = Path(tmp) / "stsb.parquet"
        pairs.to_parquet(parquet)
        for variant in a.variants or latency["variants"]:
            run = a.results / variant / f"seed{a.seed}"
            model = (a.models or a.results) / variant / f"seed{a.seed}" / "model"
            if not model.is_dir():
                missing.append(variant)
                continue
            for t in a.threads:
                log.info("%s, %d thread(s)", variant, t)
                rec = run_serving_paths(model, parquet, Path(tmp) / f"{variant}_{t}.json", latency, threads=t)
                own = json.loads((run / "eval" / "serving_paths.json").read_text(encoding="utf-8"))
                mine = next(d for d in rec["paths"] if d["kind"] == "full" and d["path"].startswith("torch"))
                theirs = next(d for d in own["paths"] if d["kind"] == "full" and d["path"].startswith("torch"))
                if abs(mine["spearman"] - theirs["spearman"]) > 1e-6 or rec["n_pairs"] != own["n_pairs"]:
                    raise SystemExit(
                        f"{variant}: not the workflow's pairs (Spearman {mine['spearman']} vs {theirs['spearman']})"
                    )
                results.append({"variant": variant, "seed": a.seed, "record": rec})
    if missing:
        log.warning("no model folder on disk, skipped: %s", ", ".join(missing))
    command = (
        f"HF_HUB_OFFLINE=1 python benchmarks/serving_paths_students.py {a.results} --config {a.config} "
        f"--data-dir {a.data_dir} --threads {' '.join(map(str, a.threads))} --out {a.out}"
        + (f" --models {a.models}" if a.models else "")
        + (f" --variants {' '.join(a.variants)}" if a.variants else "")
    )
    write_json(f"{a.out}.json", {"command": command, "skipped": missing, "results": results})
    write_text(f"{a.out}.md", markdown(results, command))
    print(markdown(results, command))


if __name__ == "__main__":
    main()
