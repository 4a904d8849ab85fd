"""The serving paths of a run's trained students at other thread counts than the workflow's.

The workflow's ``serving_paths`` rule times each timed student at the config's thread count
(``threads``: 2 for ``config/cpu.yaml``). This script times the same students, with the same
code (:func:`leap.serving_paths.run_serving_paths`) and the same settings (the config's
``latency`` block: pairs, thetas, batch sizes), at the thread counts given, on the model
folders the run left on disk (``<results>/<variant>/seed<seed>/model``; a variant whose
folder is gone is skipped and named). The STS-B pairs are extracted from the data folder as
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

from leap.data import stsb_pairs
from leap.files import write_json, write_text
from leap.plan import Plan
from leap.serving_paths import run_serving_paths

log = logging.getLogger("serving_paths_students")


def row(name: str, threads: int, label: str, d: dict) -> str:
    return (
        f"| {name}, {threads} | {label}{d['path']} | {d['ms_b1']:.2f} | {d['ms_b32']:.2f} | {100 * d['spearman']:.1f} "
        f"| {100 * d['spearman_drop']:.2f} | {100 * d['exit_rate']:.0f}% | {d['expected_exit_layer']:.2f} |"
    )


def markdown(results: list[dict], command: str) -> str:
    """Per student and thread count: full depth on each engine, then the fastest path at batch 1
    within each Spearman-drop budget (the README's serving rows)."""
    from leap.deploy import Budget
    from leap.serving_paths import choose, path_from_dict

    lines = [
        "# Serving paths of the CPU-scale students",
        "",
        f"`{command}`",
        "",
        "| model, threads | path | ms, batch 1 | ms, batch 32 | STS-B dev | drop | exit rate | E[l] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        data, name = r["record"], r["variant"]
        lines += [row(name, data["threads"], "", d) for d in data["paths"] if d["kind"] == "full"]
        paths = [path_from_dict(d) for d in data["paths"]]
        for b in (0.01, 0.02, 0.05):
            for p in paths:
                p.meets_budget = Budget(spearman_drop=b).met(p.to_dict())
            best = choose(paths, 1)
            label = f"fastest within {100 * b:g}: "
            lines.append(row(name, data["threads"], label, best.to_dict()) if best else f"| {name} | none |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="the run's results folder, e.g. results/cpu")
    ap.add_argument("--config", required=True, help="the run's config file, e.g. config/cpu.yaml")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--seed", type=int, default=0)
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
        for variant in latency["variants"]:
            run = a.results / variant / f"seed{a.seed}"
            if not (run / "model").is_dir():
                missing.append(variant)
                continue
            for t in a.threads:
                log.info("%s, %d thread(s)", variant, t)
                rec = run_serving_paths(run / "model", parquet, Path(tmp) / f"{variant}_{t}.json", latency, threads=t)
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
    )
    write_json(f"{a.out}.json", {"command": command, "skipped": missing, "results": results})
    write_text(f"{a.out}.md", markdown(results, command))
    print(markdown(results, command))


if __name__ == "__main__":
    main()
