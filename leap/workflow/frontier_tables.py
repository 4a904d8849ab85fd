"""The frontier's tables (the project's headline measurement): every operating point of
every model on every benchmark (``frontier.csv``) and one row per model and benchmark
(``frontier_summary.csv``: exit advantage at the config's rule with its seed interval, the
best deployable point at the bar, the oracle's, and the STS-B point chosen on dev).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leap.workflow.frontier import NOT_DEPLOYABLE, FrontierPoint, meets_bar, truncation_quality_at
from leap.workflow.records import (
    Frontier,
    PairEval,
    PairSplit,
    Point,
    SeedSet,
    latency_runs,
    mean_of,
    pair_splits,
    retrieval_runs,
)
from leap.workflow.results import Results, collect, mean, runs, seed_summary
from leap.workflow.tables import write_table

log = logging.getLogger(__name__)


def _frontier_sources(res: Results) -> list[tuple[str, str, list[Frontier]]]:
    """``(model, benchmark, [frontier record per seed])`` for every model and benchmark."""
    out = []
    for v in res:
        if v.startswith(("abl_", "beta")):
            continue
        stsb = [r.frontier for r in pair_splits(res, v, "stsb").records if r.frontier is not None]
        if stsb:
            out.append((v, "STS-B", stsb))
        heads = [Frontier.from_dict(h["frontier"]) for h in runs(res, v, "stsb_heads") if "frontier" in h]
        if heads:
            out.append((v, "STS-B", heads))
        for ds, rs in sorted(retrieval_runs(res, v).items()):
            fr = [r.frontier for r in rs.records if r.frontier is not None]
            if fr:
                out.append((v, ds, fr))
            fq = [r.frontier_query_only for r in rs.records if r.frontier_query_only is not None]
            if fq:
                out.append((v, query_only(ds), fq))
    return out


def query_only(dataset: str) -> str:
    """The benchmark name of a retrieval set in the query-only setting (documents at full depth)."""
    return f"{dataset} (query-only)"


def _latency_speedups(res: Results, variant: str) -> dict[tuple[str, Any], dict[int, float]]:
    """Measured speedups of a variant: ``{("exit", None) or ("truncation", layer): {batch: speedup}}``."""
    out: dict[tuple[str, Any], dict[int, list[float]]] = {}
    for lat in latency_runs(res, variant).records:
        for r in lat.rows:
            out.setdefault(("exit", None), {}).setdefault(r.batch_size, []).append(r.speedup)
            for l, t in r.extra.get("truncate", {}).items():
                out.setdefault(("truncation", int(l)), {}).setdefault(r.batch_size, []).append(t["speedup"])
    return {k: {b: float(np.mean(v)) for b, v in d.items()} for k, d in out.items()}


def _truncation_rows(recs: list[Frontier], speed: dict) -> list[dict]:
    """Static truncation at every layer (mean quality over seeds), with measured speedups."""
    rows = []
    for i, p in enumerate(recs[0].truncation):
        q = mean([r.truncation[i].quality for r in recs])
        sp = speed.get(("truncation", p.setting), {})
        rows.append(
            {
                "rule": "truncation",
                "theta": p.setting,
                "at_config": False,
                "exit_rate": p.exit_rate,
                "mean_exit_layer": p.mean_exit_layer,
                "layer_reduction": p.layer_reduction,
                "quality": q,
                "truncation_quality_at_same_depth": q,
                "exit_advantage": 0.0,
                "speedup_b1": sp.get(1),
                "speedup_b32": sp.get(32),
            }
        )
    return rows


def _exit_rows(recs: list[Frontier], trunc: list[list[FrontierPoint]], speed: dict) -> list[dict]:
    """Every sweep point and the config's rule (mean over seeds), each against its own truncation."""
    rows = []
    points = [("sweep", i, p) for i, p in enumerate(recs[0].sweep)] + [("at_config", None, recs[0].at_config)]
    for kind, i, p in points:
        per_seed: list[Point] = [r.sweep[i] if kind == "sweep" else r.at_config for r in recs]
        sp = speed.get(("exit", None), {}) if kind == "at_config" else {}
        rows.append(
            {
                "rule": p.rule,
                "theta": _setting(p.setting),
                "at_config": kind == "at_config",
                "exit_rate": mean_of(per_seed, lambda q: q.exit_rate),
                "mean_exit_layer": mean_of(per_seed, lambda q: q.mean_exit_layer),
                "layer_reduction": mean_of(per_seed, lambda q: q.layer_reduction),
                "quality": mean_of(per_seed, lambda q: q.quality),
                "truncation_quality_at_same_depth": mean(
                    [truncation_quality_at(q.mean_exit_layer, t) for q, t in zip(per_seed, trunc)]
                ),
                "exit_advantage": mean_of(per_seed, lambda q: q.exit_advantage),
                "speedup_b1": sp.get(1),
                "speedup_b32": sp.get(32),
            }
        )
    return rows


def _fixed_depth_row(fixed: SeedSet[PairSplit], trunc: list[list[FrontierPoint]], n_layers: int) -> dict:
    """The fixed-depth student's point beside the baseline's truncation curve (STS-B)."""
    Lf = len(fixed.records[0].spearman_per_layer)
    return {
        "model": "fixed_depth",
        "seeds": len(fixed),
        "rule": "fixed_depth",
        "theta": Lf,
        "at_config": True,
        "exit_rate": None,
        "mean_exit_layer": float(Lf),
        "layer_reduction": n_layers / Lf,
        "quality": fixed.mean(lambda r: r.spearman_full),
        "truncation_quality_at_same_depth": mean([truncation_quality_at(Lf, t) for t in trunc]),
        "exit_advantage": None,
        "speedup_b1": None,
        "speedup_b32": None,
    }


def frontier_table(res: Results) -> pd.DataFrame | None:
    """Every operating point of every model on every benchmark (mean over seeds):
    ``model, benchmark, rule, theta`` (the setting: theta, PABEE theta/patience, entropy
    threshold, or the layer of a truncation), ``exit_rate, mean_exit_layer, layer_reduction,
    quality, truncation_quality_at_same_depth, exit_advantage`` and the measured speedup at
    batch 1 and 32 where the latency stage timed that point (the config's rule and every
    truncation depth from l_min). ``at_config`` marks the config's rule."""
    rows = []
    fixed = pair_splits(res, "fixed_depth", "stsb")
    for model, bench, recs in _frontier_sources(res):
        speed = _latency_speedups(res, model)
        trunc = [[p.frontier_point() for p in r.truncation] for r in recs]
        head = {"model": model, "seeds": len(recs), "benchmark": bench}
        rows += [{**head, **r} for r in _truncation_rows(recs, speed) + _exit_rows(recs, trunc, speed)]
        if model == "baseline" and bench == "STS-B" and fixed:
            rows.append({"benchmark": bench, **_fixed_depth_row(fixed, trunc, len(trunc[0]))})
    return pd.DataFrame(rows) if rows else None


def _setting(x: float | int | str) -> float | int | str:
    """An operating point's setting as a reader wants it: a threshold calibrated on dev (the
    DeeBERT entropy) to 3 decimals; thetas, layers and ``theta/patience`` as they are."""
    return round(x, 3) if isinstance(x, float) else x


def _one_depth(exit_rate: float, mean_exit_layer: float) -> bool:
    """Every input at (nearly) one layer: static truncation in disguise (advantage ~0 by
    construction), never counted as an exit point."""
    return exit_rate >= 0.99 and abs(mean_exit_layer - round(mean_exit_layer)) < 0.05


def dev_chosen_point(res: Results, model: str) -> dict | None:
    """The STS-B operating point chosen on the *dev* split and reported on test: among the
    sweep points that meet the bar on dev (mean over seeds: >= 1.4x layer reduction, >= 80%
    exiting, not one depth), the best dev exit advantage; its test figures (mean over seeds,
    with the seeds' t-interval of the test advantage). ``None`` when no point meets the bar on
    dev or the runs carry no dev split."""
    evals = [PairEval.from_dict(r) for r in runs(res, model, "stsb")]
    recs = [e for e in evals if {"dev", "test"} <= set(e.splits)]
    if not recs:
        return None
    dev = [r.splits["dev"].frontier.sweep for r in recs]
    test = [r.splits["test"].frontier.sweep for r in recs]
    best, best_adv = None, -np.inf
    for i in range(len(dev[0])):
        if dev[0][i].rule in NOT_DEPLOYABLE:
            continue
        pts = [d[i] for d in dev]
        rate, red = mean_of(pts, lambda p: p.exit_rate), mean_of(pts, lambda p: p.layer_reduction)
        el, adv = mean_of(pts, lambda p: p.mean_exit_layer), mean_of(pts, lambda p: p.exit_advantage)
        if meets_bar(rate, red) and not _one_depth(rate, el) and adv > best_adv:
            best, best_adv = i, adv
    if best is None:
        return None
    pts = [t[best] for t in test]
    s = seed_summary([p.exit_advantage for p in pts])
    return {
        "rule": f"{pts[0].rule} {_setting(pts[0].setting)}",
        "dev_exit_advantage": best_adv,
        "exit_advantage": s["mean"],
        "ci95": f"[{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]" if s["ci_low"] is not None else "",
        "quality": mean_of(pts, lambda p: p.quality),
        "exit_rate": mean_of(pts, lambda p: p.exit_rate),
        "layer_reduction": mean_of(pts, lambda p: p.layer_reduction),
    }


def frontier_summary(res: Results) -> pd.DataFrame | None:
    """One row per model and benchmark: the exit advantage at the config's rule (mean and
    95% t-interval over seeds) and the best over the sweep, overall and among points with
    >= 1.4x layer reduction and >= 80% of inputs exiting, with the quality at those points
    and the model's full depth. Those bests are picked on the benchmark itself (an upper
    bound); for STS-B the point picked on the dev split (:func:`dev_chosen_point`) is the
    honest figure, reported on test."""
    df = frontier_table(res)
    if df is None:
        return None
    rows = []
    for (model, bench), g in df[df["rule"] != "truncation"].groupby(["model", "benchmark"], sort=False):
        if model == "fixed_depth":
            continue
        at = g[g["at_config"]].iloc[0]
        seeds_adv, parts = [], {"selection_gain": [], "mixing": []}
        for m, b, recs in _frontier_sources(res):
            if m == model and b == bench:
                seeds_adv = [r.at_config.exit_advantage for r in recs]
                for k in parts:
                    parts[k] = [r.at_config.extra.get(k) for r in recs]
        s = seed_summary(seeds_adv)
        # a point with every input at (nearly) one layer is static truncation in disguise
        # (advantage ~0 by construction): it cannot be the best exit point
        one_depth = [_one_depth(r, e) for r, e in zip(g["exit_rate"], g["mean_exit_layer"])]
        points = g[~g["at_config"] & ~np.asarray(one_depth, dtype=bool) & (g["exit_rate"] > 0)]
        sweep = points[~points["rule"].isin(NOT_DEPLOYABLE)]
        best = sweep.loc[sweep["exit_advantage"].idxmax()] if len(sweep) else None
        best_ok = _best_at_bar(sweep)
        oracle_ok = _best_at_bar(points[points["rule"] == "oracle"])
        full = df[(df["model"] == model) & (df["benchmark"] == bench) & (df["rule"] == "truncation")]
        full_q = float(full.loc[full["mean_exit_layer"].idxmax(), "quality"]) if len(full) else None
        rows.append(
            {
                "model": model,
                "benchmark": bench,
                "seeds": int(at["seeds"]),
                "full_depth_quality": full_q,
                "rule_at_config": f"{at['rule']} {at['theta']}",
                "exit_rate_at_config": at["exit_rate"],
                "layer_reduction_at_config": at["layer_reduction"],
                "quality_at_config": at["quality"],
                "exit_advantage_at_config": at["exit_advantage"],
                "exit_advantage_at_config_ci95": (
                    f"[{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]" if s["ci_low"] is not None else ""
                ),
                "selection_gain_at_config": mean(parts["selection_gain"]),
                "mixing_at_config": mean(parts["mixing"]),
                "best_exit_advantage": None if best is None else best["exit_advantage"],
                "best_at": "" if best is None else f"{best['rule']} {best['theta']}",
                "best_advantage_at_bar": None if best_ok is None else best_ok["exit_advantage"],
                "best_at_bar": "" if best_ok is None else f"{best_ok['rule']} {best_ok['theta']}",
                "quality_at_bar": None if best_ok is None else best_ok["quality"],
                "exit_rate_at_bar": None if best_ok is None else best_ok["exit_rate"],
                "layer_reduction_at_bar": None if best_ok is None else best_ok["layer_reduction"],
                "oracle_advantage_at_bar": None if oracle_ok is None else oracle_ok["exit_advantage"],
                "oracle_at_bar": "" if oracle_ok is None else f"oracle {oracle_ok['theta']}",
                "oracle_quality_at_bar": None if oracle_ok is None else oracle_ok["quality"],
                **_dev_columns(res, model, bench),
            }
        )
    return pd.DataFrame(rows) if rows else None


def _best_at_bar(points: pd.DataFrame) -> pd.Series | None:
    """The point of highest exit advantage among ``points`` that meet the bar (>= 1.4x layer
    reduction, >= 80% of inputs exiting), or None."""
    ok = points[[meets_bar(r, x) for r, x in zip(points["exit_rate"], points["layer_reduction"])]]
    return ok.loc[ok["exit_advantage"].idxmax()] if len(ok) else None


def _dev_columns(res: Results, model: str, bench: str) -> dict:
    chosen = dev_chosen_point(res, model) if bench == "STS-B" and model in res else None
    keys = ("rule", "exit_advantage", "ci95", "quality", "exit_rate", "layer_reduction")
    return {f"dev_chosen_{k}": (chosen or {}).get(k) for k in keys}


def build_frontier_tables(eval_paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike) -> dict[str, str]:
    """``frontier.csv`` / ``frontier_summary.csv`` (and Markdown) in ``out_dir``; a run with
    no frontier in any evaluation still writes both, with a line saying so."""
    res = collect(eval_paths)
    out = Path(out_dir)
    status = {}
    for name, fn in (("frontier", frontier_table), ("frontier_summary", frontier_summary)):
        df = fn(res)
        if df is None or df.empty:
            df = pd.DataFrame({"note": ["no evaluation of this run carries a frontier"]})
            status[name] = "empty"
        else:
            status[name] = "written"
        write_table(df, out / f"{name}.csv", out / f"{name}.md")
    return status
