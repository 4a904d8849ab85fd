"""The Markdown report of a run: the frontier first, then claims versus measured
(:mod:`leap.workflow.claims`), every table and figure, and the run's provenance."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from leap.files import atomic_path, write_text
from leap.workflow.claims import VERDICTS, build_claims
from leap.workflow.results import load_json, table_order


def write_report(
    out_md: str | os.PathLike,
    claims: pd.DataFrame,
    tables_dir: str | os.PathLike,
    figures_dir: str | os.PathLike,
    synthetic: bool,
    experiment: str,
    provenance: dict | None = None,
    pooling: dict[str, str] | None = None,
) -> None:
    """Markdown report: the frontier first, then claims, every written table, every figure,
    how each published checkpoint was loaded (``pooling``: name -> :func:`leap.workflow.checkpoints.pooling_of`),
    and the run's provenance (:mod:`leap.workflow.provenance`). On synthetic data its first lines say
    that the numbers are not comparable to the paper."""
    import json

    out = Path(out_md)
    tdir, fdir = Path(tables_dir), Path(figures_dir)
    lines = [f"# LEAP reproduction report: {experiment}", ""]
    if synthetic:
        lines += [
            "> **Synthetic data.** This run used the built-in demo data (templates and word lists written for "
            "the project) and small models. Its numbers test that the pipeline works; they are **not comparable "
            "to the paper**.",
            "",
        ]
    summary = tdir / "frontier_summary.md"
    if summary.exists():
        lines += [
            "## The frontier: does early exit beat cutting the model at a fixed layer?",
            "",
            "Exit advantage = exited quality minus the same model's static truncation at the same mean exit "
            "layer (linear between layers); below zero, truncation is the better deal. `at_bar`: the best "
            "point with >= 1.4x fewer layers and >= 80% of inputs exiting, picked on the benchmark itself (an upper "
            "bound); `dev_chosen_*`: the STS-B point picked at that bar on the dev split and reported on test (the "
            "honest figure). Rules: `convergence` (Eq. 6; each "
            "input compared at its own exit layer), `common_depth` (the same exits, two inputs compared at the "
            "depth both reached; not in the paper), `pabee`, `deebert`. `published:<name>-maps`: a published "
            "checkpoint exit-enabled with least-squares per-layer maps, no training.",
            "",
            summary.read_text(encoding="utf-8"),
            "",
        ]
        for png in sorted(fdir.glob("fig3_frontier_*.png")):
            lines += [f"![{png.stem}]({os.path.relpath(png, out.parent)})", ""]
    counts = claims["verdict"].value_counts()
    lines += [
        "## Claims versus measured",
        "",
        "Verdicts: " + ", ".join(f"{k} {int(counts.get(k, 0))}" for k in VERDICTS) + ".",
        "",
        claims.to_markdown(index=False, missingval=""),
        "",
    ]
    lines += ["## Tables", ""]
    for md in sorted(tdir.glob("table*.md"), key=lambda p: table_order(p.stem)):
        lines += [f"### {md.stem}", "", md.read_text(encoding="utf-8"), ""]
    idx = tdir / "index.json"
    if idx.exists():
        skipped = {k: v for k, v in json.loads(idx.read_text()).items() if v != "written"}
        if skipped:
            lines += ["Skipped tables: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()), ""]
    lines += ["## Figures", ""]
    for png in sorted(fdir.glob("fig*.png")):
        lines += [f"![{png.stem}]({os.path.relpath(png, out.parent)})", ""]
    if pooling:
        lines += ["## Published checkpoints: how they were loaded", "", "| checkpoint | pooling |", "| --- | --- |"]
        lines += [f"| {name} | {how} |" for name, how in pooling.items()] + [""]
    if provenance is not None:
        from leap.workflow.provenance import provenance_markdown

        lines += [provenance_markdown(provenance)]
    write_text(out, "\n".join(lines) + "\n")


def run_report(
    eval_paths: Iterable[str],
    diagnostics: dict[str, str],
    tables_index: str,
    figures_index: str,
    stats_json: str,
    claims_csv: str,
    report_md: str,
    experiment: str,
    provenance_json: str | None = None,
    pooling: dict[str, str] | None = None,
) -> pd.DataFrame:
    """claims.csv and report.md (the workflow's report rule)."""
    claims = build_claims(eval_paths, diagnostics)
    with atomic_path(claims_csv, suffix=".csv") as tmp:
        claims.to_csv(tmp, index=False)
    synthetic = bool(load_json(stats_json).get("synthetic", False))
    prov = load_json(provenance_json) if provenance_json else None
    tables, figures = Path(tables_index).parent, Path(figures_index).parent
    write_report(report_md, claims, tables, figures, synthetic, experiment, prov, pooling)
    return claims
