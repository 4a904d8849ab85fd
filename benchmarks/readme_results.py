"""The README's frontier tables, printed from a run's ``tables/frontier_summary.csv``.

Every number of the README's results tables is a cell of the committed summary table; this
script is how they get there, and ``tests/test_readme.py`` checks that the README still
holds what it prints for the committed ``results/cpu``.

Two tables: STS-B (every model, with the point chosen on STS-B dev and reported on test),
and retrieval (each BEIR set in the paper's setting, where documents exit too, and in the
query-only setting, where documents are embedded at full depth). Columns: full-depth
quality; at the config's rule, the exit rate, layer reduction L/E[l] and exit advantage
(exited quality minus truncation quality at the same mean depth, mean over seeds and the
seeds' 95% t-interval); the best deployable point at the bar (>= 1.4x layer reduction,
>= 80% of inputs exiting), picked on test, an upper bound; the oracle rule's best at the
bar (it reads the final layer: the ceiling of every rule that stops when the embedding has
converged).

Usage:
  python benchmarks/readme_results.py results/cpu
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from leap.deploy.calibrate import Budget
from leap.deploy.path_choice import choose, in_budget
from leap.deploy.serving_paths import path_from_dict

BENCHMARKS = {"scifact": "SciFact", "nfcorpus": "NFCorpus"}


def model_name(model: str) -> str:
    """README name of a frontier model (``published:all-MiniLM-L6-v2-maps`` -> ``all-MiniLM-L6-v2 + maps``)."""
    name = model.removeprefix("published:")
    if name.endswith("-maps"):
        name = name.removesuffix("-maps") + " + maps"
    return {"deebert": "deebert (per-pair heads)", "self_xd_mpnet": "self_xd_mpnet (12 layers)"}.get(name, name)


def benchmark_name(bench: str) -> str:
    """``scifact (query-only)`` -> ``SciFact, query-only``; ``scifact`` -> ``SciFact, both sides``."""
    base, _, setting = bench.partition(" (")
    if base == "STS-B":
        return base
    nice = BENCHMARKS.get(base, base)
    return f"{nice}, query-only" if setting.startswith("query-only") else f"{nice}, both sides"


def _num(x, fmt: str) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _text(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def _at_config(r: pd.Series) -> str:
    ci = _text(r["exit_advantage_at_config_ci95"])
    return (
        f"{r['rule_at_config']}: {_num(r['exit_rate_at_config'] * 100, '.1f')}% / "
        f"{_num(r['layer_reduction_at_config'], '.2f')}x / "
        f"{_num(r['exit_advantage_at_config'], '+.3f')}" + (f" {ci}" if ci else "")
    )


def _at_bar(rule, quality, advantage) -> str:
    rule = _text(rule)
    if not rule:
        return "no point meets the bar"
    return f"{rule}: {_num(quality, '.3f')}, {_num(advantage, '+.3f')}"


def _dev(r: pd.Series) -> str:
    rule = _text(r.get("dev_chosen_rule"))
    if not rule:
        return "no point meets the bar on dev"
    ci = _text(r.get("dev_chosen_ci95"))
    return (
        f"{rule}: {_num(r['dev_chosen_quality'], '.3f')}, {_num(r['dev_chosen_exit_rate'] * 100, '.1f')}%, "
        f"{_num(r['dev_chosen_layer_reduction'], '.2f')}x, {_num(r['dev_chosen_exit_advantage'], '+.3f')}"
        + (f" {ci}" if ci else "")
    )


def _order(df: pd.DataFrame) -> pd.DataFrame:
    first = ["baseline", "leap", "leap_fix", "leap_xd", "self_xd", "adaptive_layer", "layerskip", "deebert"]
    rank = {m: i for i, m in enumerate(first)}
    key = df["model"].map(lambda m: (rank.get(m, len(first) + (m.startswith("published:"))), m))
    return df.assign(_k=key).sort_values(["_k", "benchmark"], kind="stable").drop(columns="_k")


def stsb_table(summary: pd.DataFrame) -> str:
    rows = [
        "| model | seeds | full depth | at the config's rule: rule, exit rate / L/E[l] / advantage | best at the bar: "
        "rule, quality, advantage | oracle at the bar | point chosen on dev, on test: rule, quality, exit rate, "
        "L/E[l], advantage |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, r in _order(summary[summary["benchmark"] == "STS-B"]).iterrows():
        rows.append(
            f"| {model_name(r['model'])} | {r['seeds']} | {_num(r['full_depth_quality'], '.3f')} | {_at_config(r)} "
            f"| {_at_bar(r['best_at_bar'], r['quality_at_bar'], r['best_advantage_at_bar'])} "
            f"| {_at_bar(r.get('oracle_at_bar'), r.get('oracle_quality_at_bar'), r.get('oracle_advantage_at_bar'))} "
            f"| {_dev(r)} |"
        )
    return "\n".join(rows)


def retrieval_table(summary: pd.DataFrame) -> str:
    rows = [
        "| model | benchmark, setting | seeds | full depth "
        "| at the config's rule: rule, exit rate / L/E[l] / advantage "
        "| best at the bar: rule, quality, advantage | oracle at the bar |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    ret = summary[summary["benchmark"] != "STS-B"]
    for _, r in _order(ret).iterrows():
        rows.append(
            f"| {model_name(r['model'])} | {benchmark_name(r['benchmark'])} | {r['seeds']} "
            f"| {_num(r['full_depth_quality'], '.3f')} | {_at_config(r)} "
            f"| {_at_bar(r['best_at_bar'], r['quality_at_bar'], r['best_advantage_at_bar'])} "
            f"| {_at_bar(r.get('oracle_at_bar'), r.get('oracle_quality_at_bar'), r.get('oracle_advantage_at_bar'))} |"
        )
    return "\n".join(rows)


SERVING_BUDGETS = (0.01, 0.02, 0.05)  # Spearman drop against full depth on torch


SERVING_HEADER = [
    "| model, threads | path | ms, batch 1 | ms, batch 32 | STS-B dev | drop | exit rate | E[l] |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
]


def serving_rows(name: str, data: dict) -> list[str]:
    """One student's rows from a ``serving_paths`` record: torch and ONNX Runtime int8 at full
    depth, then the fastest path at batch 1 within each Spearman-drop budget
    (:func:`leap.deploy.path_choice.choose`, the rule ``leap calibrate --paths auto`` applies)."""
    name = f"{name}, {data['threads']}"
    paths = [path_from_dict(d) for d in data["paths"]]

    def row(label: str, d: dict) -> str:
        return (
            f"| {name} | {label}{d['path']} | {d['ms_b1']:.2f} | {d['ms_b32']:.2f} | {100 * d['spearman']:.1f} "
            f"| {100 * d['spearman_drop']:.2f} | {100 * d['exit_rate']:.0f}% | {d['expected_exit_layer']:.2f} |"
        )

    rows = [row("", d) for d in data["paths"] if d["kind"] == "full"]
    for b in SERVING_BUDGETS:
        for p in paths:
            p.meets_budget = in_budget(Budget(spearman_drop=b), p.to_dict())
        best = choose(paths, 1)
        within = f"within {100 * b:g}"
        rows.append(row(f"fastest {within}: ", best.to_dict()) if best else f"| {name} | none {within} |")
    return rows


def serving_table(results: Path) -> str:
    """Per timed student (seed 0, the workflow's ``serving_paths`` rule): :func:`serving_rows`."""
    rows = list(SERVING_HEADER)
    for f in sorted(results.glob("*/seed0/eval/serving_paths.json")):
        rows += serving_rows(model_name(f.parts[-4]), json.loads(f.read_text(encoding="utf-8")))
    return "\n".join(rows)


def readme_tables(results: Path) -> str:
    """The frontier tables and the serving table, as the README holds them."""
    summary = pd.read_csv(results / "tables" / "frontier_summary.csv")
    return stsb_table(summary) + "\n\n" + retrieval_table(summary) + "\n\n" + serving_table(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="a run's results folder, e.g. results/cpu")
    print(readme_tables(ap.parse_args().results))


if __name__ == "__main__":
    main()
