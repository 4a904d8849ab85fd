"""The paper's result tables: main results (1), cross-distillation (2), the Pareto and strategy
tables (5, 10), BEIR (6, 15, 16), latency (7), ablation and beta sweep (11, 12), hyperparameters (14)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from leap.workflow.records import (
    Diagnostic,
    PairSplit,
    Point,
    heads_runs,
    latency_runs,
    mean_of,
    pair_splits,
    retrieval_runs,
)
from leap.workflow.results import PAPER_VARIANTS, Results, extra_variants, load_json, runs
from leap.workflow.tables.registry import table

log = logging.getLogger(__name__)


@table("table2_cross_distillation", needs="diagnostics")
def table2_cross_distillation(diagnostics: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """Table 2: the exit diagnostic on published (distilled) checkpoints."""
    rows = []
    for name, path in diagnostics.items():
        d = Diagnostic.from_dict(load_json(path))
        l_min = d.exit["min_layer"]
        rows.append(
            {
                "Model": name,
                "Layers": len(d.layers),
                "l_min": l_min,
                "Sim. to final @ l_min": d.similarity_to_final[l_min - 1],
                f"Exit rate (theta={d.exit['theta']:.2f})": d.exit_rate,
                "E[l]": d.expected_exit_layer,
                "Layer reduction": d.layer_reduction,
                "Monitoring overhead": d.monitoring_overhead,
                "Verdict": d.verdict,
            }
        )
    return pd.DataFrame(rows)


def _main_variants(res: Results) -> list[str]:
    return ["baseline", "leap", *extra_variants(res), *PAPER_VARIANTS[2:]]


@table("table1_main")
def table1_main(res: Results, variants: Sequence[str] | None = None) -> pd.DataFrame | None:
    """Table 1: STS-B test, exited and at full depth (mean [95% t-interval] over seeds, and the
    seed values), exit rate, E[l], layer reduction, measured speedup at batch 1; QQP columns
    where the QQP evaluation ran. The DeeBERT row decides per pair (an off-ramp reads a pair)."""
    rows = []
    for v in variants or _main_variants(res):
        if v == "deebert":
            heads = heads_runs(res, v)
            if heads:
                rows.append(
                    {
                        "Model": "deebert (per-pair exit)",
                        "Seeds": len(heads),
                        "STS-B (exit)": heads.interval(lambda h: h.test.spearman_exit),
                        "STS-B (exit), seeds": heads.seeds_text(lambda h: h.test.spearman_exit),
                        "STS-B (full)": "",
                        "Exit rate": heads.mean(lambda h: h.test.exit_rate),
                        "E[l]": heads.mean(lambda h: h.test.expected_exit_layer),
                        "Layer Red.": heads.mean(lambda h: h.test.layer_reduction),
                        "Speedup (b=1)": None,
                    }
                )
            continue
        rs = pair_splits(res, v, "stsb")
        if not rs:
            continue
        lat = latency_runs(res, v)
        row = {
            "Model": v,
            "Seeds": len(rs),
            "STS-B (exit)": rs.interval(lambda r: r.spearman_exit),
            "STS-B (exit), seeds": rs.seeds_text(lambda r: r.spearman_exit),
            "STS-B (full)": rs.interval(lambda r: r.spearman_full),
            "Exit rate": rs.mean(lambda r: r.exit_rate),
            "E[l]": rs.mean(lambda r: r.expected_exit_layer),
            "Layer Red.": rs.mean(lambda r: r.layer_reduction),
            "Speedup (b=1)": lat.mean(lambda r: r.speedup(1)) if lat else None,
        }
        qqp = pair_splits(res, v, "qqp")
        if qqp:
            row |= {
                "QQP (exit)": qqp.interval(lambda r: r.spearman_exit),
                "QQP (full)": qqp.interval(lambda r: r.spearman_full),
                "QQP AP (exit)": qqp.mean(lambda r: r.ap_exit),
                "QQP AP (full)": qqp.mean(lambda r: r.ap_full),
            }
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def _sweep_points(split: PairSplit, rule: str = "convergence") -> list[Point]:
    return split.frontier.points(rule) if split.frontier else []


@table("table5_pareto")
def table5_pareto(res: Results, variant: str = "leap") -> pd.DataFrame | None:
    """Table 5: the theta sweep on STS-B test (mean over seeds): exit rate, E[l], layer
    reduction, Spearman, and the exit advantage over the model's own truncation."""
    rs = pair_splits(res, variant, "stsb")
    if not rs:
        return None
    rows = []
    for pts in zip(*(_sweep_points(r) for r in rs.records)):
        rows.append(
            {
                "theta": pts[0].setting,
                "Exit rate": mean_of(pts, lambda q: q.exit_rate),
                "E[l]": mean_of(pts, lambda q: q.mean_exit_layer),
                "Layer Red.": mean_of(pts, lambda q: q.layer_reduction),
                "STS-B": mean_of(pts, lambda q: q.quality),
                "Exit advantage": mean_of(pts, lambda q: q.exit_advantage),
            }
        )
    return pd.DataFrame(rows)


@table("table6_beir")
def table6_beir(res: Results, k: int = 10) -> pd.DataFrame | None:
    """Table 6: NDCG@k, baseline full, LEAP full, LEAP early exit (and every extra exit objective)."""
    base, leap = retrieval_runs(res, "baseline"), retrieval_runs(res, "leap")
    if not base or not leap:
        return None
    rows = []
    for ds in sorted(set(base) & set(leap)):
        b = base[ds].mean(lambda d: d.ndcg(k))
        lf = leap[ds].mean(lambda d: d.ndcg(k))
        le = leap[ds].mean(lambda d: d.ndcg(k, exited=True))
        row = {
            "Dataset": ds,
            "Baseline": b,
            "LEAP full": lf,
            "LEAP EE": le,
            "Delta B->L (%)": 100 * (lf - b) / b if b else None,
            "Delta Full->EE (%)": 100 * (le - lf) / lf if lf else None,
            "Docs exiting early": leap[ds].mean(lambda d: d.exit_rate("corpus")),
            "Queries exiting early": leap[ds].mean(lambda d: d.exit_rate("query")),
        }
        for v in extra_variants(res):
            rs = retrieval_runs(res, v).get(ds)
            if rs:
                row |= {
                    f"{v} full": rs.mean(lambda d: d.ndcg(k)),
                    f"{v} EE": rs.mean(lambda d: d.ndcg(k, exited=True)),
                    f"{v} docs exiting early": rs.mean(lambda d: d.exit_rate("corpus")),
                }
        rows.append(row)
    return pd.DataFrame(rows)


@table("table15_beir_ndcg5_10")
@table("table16_beir_ndcg1_3")
def table_beir_cutoffs(res: Results, ks: Sequence[int]) -> pd.DataFrame | None:
    """Tables 15 / 16: baseline vs LEAP at full inference at other cutoffs."""
    base, leap = retrieval_runs(res, "baseline"), retrieval_runs(res, "leap")
    if not base or not leap:
        return None
    rows = []
    for ds in sorted(set(base) & set(leap)):
        row: dict[str, Any] = {"Dataset": ds}
        for k in ks:
            b = base[ds].mean(lambda d, k=k: d.ndcg(k))
            l = leap[ds].mean(lambda d, k=k: d.ndcg(k))
            row |= {f"Baseline NDCG@{k}": b, f"LEAP NDCG@{k}": l, f"Delta@{k} (%)": 100 * (l - b) / b if b else None}
        rows.append(row)
    return pd.DataFrame(rows)


def _ci(ci: Sequence[float] | None) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


@table("table7_latency")
def table7_latency(res: Results, variants: Sequence[str] | None = None) -> pd.DataFrame | None:
    """Table 7: median full vs exit latency per batch size, speedup with its 95% interval
    (paired per-round ratios), monitoring overhead; the device is part of the table."""
    rows = []
    for v in variants or ("leap", *extra_variants(res), "baseline"):
        seeds = [s for s, evals in sorted(res.get(v, {}).items()) if "latency" in evals]
        for seed, d in zip(seeds, latency_runs(res, v).records):
            for r in d.rows:
                rows.append(
                    {
                        "Model": v,
                        "Seed": seed,
                        "Device": d.device_name or d.device,
                        "dtype": d.dtype,
                        "Batch": r.batch_size,
                        "Full (ms)": r.full_ms,
                        "Exit (ms)": r.exit_ms,
                        "Speedup": r.speedup,
                        "Speedup 95% CI": _ci(r.extra.get("speedup_ci95")),
                        "Layer Red.": r.layer_reduction,
                        "Efficiency": r.efficiency,
                        "Monitoring overhead": r.monitoring_overhead,
                        "Overhead 95% CI": _ci(r.extra.get("monitoring_overhead_ci95")),
                    }
                )
    return pd.DataFrame(rows) if rows else None


def _strategy_row(label: str, pts: Sequence[Point], full: float | None) -> dict:
    """A Table 10 row from the frontier points of one rule over seeds (mean)."""
    q = mean_of(pts, lambda p: p.quality)
    return {
        "Strategy": label,
        "STS-B": q,
        "Qual.": q / full,
        "Layer Red.": mean_of(pts, lambda p: p.layer_reduction),
        "Exit rate": mean_of(pts, lambda p: p.exit_rate),
        "Exit advantage": mean_of(pts, lambda p: p.exit_advantage),
    }


def _variant_strategies(res: Results, v: str, thetas: Sequence[float], pabee: str) -> list[dict]:
    """Convergence at ``thetas``, PABEE at ``pabee`` and truncation at l_min, l_min + 1 of one variant."""
    rs = pair_splits(res, v, "stsb")
    if not rs:
        return []
    full = rs.mean(lambda r: r.spearman_full)
    rows = []
    for th in thetas:
        pts = [p for r in rs.records for p in _sweep_points(r) if abs(p.setting - th) < 1e-9]
        if pts:
            rows.append(_strategy_row(f"Convergence theta={th:.2f} ({v})", pts, full))
    at = [r.frontier.at_config for r in rs.records]
    pab = at if at[0].rule == "pabee" else []
    pab = pab or [p for r in rs.records for p in r.frontier.points("pabee") if p.setting == pabee]
    if pab:
        rows.append(_strategy_row(f"PABEE {pabee} ({v})", pab, full))
    L = len(rs.records[0].spearman_per_layer)
    l_min = runs(res, v, "stsb")[0]["exit"]["min_layer"]
    for l in sorted({l_min, min(L - 1, l_min + 1)}):
        s = rs.mean(lambda r, l=l: r.spearman_per_layer[l - 1])
        row = {"Strategy": f"Truncation at layer {l} ({v})", "STS-B": s, "Qual.": s / full, "Layer Red.": L / l}
        rows.append({**row, "Exit rate": 1.0, "Exit advantage": 0.0})
    return rows


def _comparison_strategies(res: Results) -> list[dict]:
    """Table 10's DeeBERT-heads and fixed-depth rows, relative to the baseline's full depth."""
    heads = heads_runs(res)
    base = pair_splits(res, "baseline", "stsb")
    rows = []
    if heads and base:
        test = [
            Point(
                "deebert",
                quality=h.test.spearman_exit,
                exit_rate=h.test.exit_rate,
                layer_reduction=h.test.layer_reduction,
                exit_advantage=h.frontier.at_config.exit_advantage,
            )
            for h in heads.records
        ]
        full = base.mean(lambda r: r.spearman_full)
        rows.append(_strategy_row("DeeBERT heads, per-pair exit (baseline)", test, full))
    fixed = pair_splits(res, "fixed_depth", "stsb")
    if fixed and base:
        s = fixed.mean(lambda r: r.spearman_full)
        Lb, Lf = len(base.records[0].spearman_per_layer), len(fixed.records[0].spearman_per_layer)
        rows.append(
            {
                "Strategy": f"Fixed depth ({Lf} of {Lb} layers, trained)",
                "STS-B": s,
                "Qual.": s / base.mean(lambda r: r.spearman_full),
                "Layer Red.": Lb / Lf,
                "Exit rate": None,
                "Exit advantage": None,
            }
        )
    return rows


@table("table10_strategies")
def table10_strategies(
    res: Results,
    variant: str = "leap",
    thetas: Sequence[float] = (0.93, 0.95, 0.99),
    pabee: str = "0.99/3",
) -> pd.DataFrame | None:
    """Table 10: exit strategies on STS-B test. Convergence at ``thetas`` and PABEE at
    ``pabee`` ("theta/patience"; the config's rule if it is PABEE) for LEAP and every extra
    exit objective, DeeBERT heads, the fixed-depth student, and static truncation of the same
    model at l_min and l_min + 1. Qual. is relative to the same model's full depth; Exit
    advantage is against its own truncation."""
    rows = [row for v in (variant, *extra_variants(res)) for row in _variant_strategies(res, v, thetas, pabee)]
    rows += _comparison_strategies(res)
    return pd.DataFrame(rows) if rows else None


@table("table11_ablation")
def table11_ablation(
    res: Results,
    rows_: Sequence[tuple[str, str]] = (
        ("abl_final", "L_final"),
        ("abl_inter", "+ L_inter"),
        ("abl_contrast", "+ L_contrast (= the baseline)"),
        ("abl_exit", "+ L_exit (full LEAP)"),
    ),
) -> pd.DataFrame | None:
    """Table 11: each loss term added in turn. Row (iii) trains exactly the baseline's terms
    and says so; ``abl_exit`` is LEAP itself: when it was not trained separately, the
    ``leap`` runs fill its row (the Variant column says which runs)."""
    rows = []
    for v, label in rows_:
        rs = pair_splits(res, v, "stsb")
        if not rs and v == "abl_exit":
            v, rs = "leap", pair_splits(res, "leap", "stsb")
        if rs:
            rows.append(
                {
                    "Configuration": label,
                    "Variant": v,
                    "Seeds": len(rs),
                    "STS-B (full)": rs.mean(lambda r: r.spearman_full),
                    "STS-B (exit)": rs.mean(lambda r: r.spearman_exit),
                    "Exit rate": rs.mean(lambda r: r.exit_rate),
                    "E[l]": rs.mean(lambda r: r.expected_exit_layer),
                    "Layer Red.": rs.mean(lambda r: r.layer_reduction),
                }
            )
    return pd.DataFrame(rows) if rows else None


@table("table12_beta")
def table12_beta(res: Results) -> pd.DataFrame | None:
    """Table 12: the beta sweep (reduced training)."""
    rows = []
    for v in sorted(x for x in res if re.fullmatch(r"beta[0-9.]+", x)):
        rs = pair_splits(res, v, "stsb")
        if rs:
            rows.append(
                {
                    "beta": float(v[4:]),
                    "Exit rate": rs.mean(lambda r: r.exit_rate),
                    "Layer Red.": rs.mean(lambda r: r.layer_reduction),
                    "STS-B (exit)": rs.mean(lambda r: r.spearman_exit),
                    "STS-B (full)": rs.mean(lambda r: r.spearman_full),
                }
            )
    return pd.DataFrame(rows).sort_values("beta") if rows else None


@table("table14_hyperparameters", needs="train_configs")
def table14_hyperparameters(train_configs: dict[str, str | os.PathLike]) -> pd.DataFrame | None:
    """Table 14: the resolved training config of each variant (first seed)."""
    if not train_configs:
        return None
    rows = []
    for v, p in train_configs.items():
        c = load_json(p)
        loss = c.pop("loss")
        rows.append(
            {
                "Variant": v,
                "Student": c["student"],
                "Layers": c["student_layers"],
                "Teacher": c.get("teacher"),
                "Epochs": c["epochs"],
                "Steps": c["steps"],
                "Batch": c["batch_size"],
                "lr": c["lr"],
                "Max seq": c["max_seq_length"],
                "Train sentences": c["n_train"],
                "Objective": c["objective"],
                "Terms": "+".join(loss["terms"]),
                "alpha": loss["alpha"],
                "beta": loss["beta"],
                "delta": loss["delta"],
                "eps": loss["eps"],
                "gamma": loss["gamma"],
                "tau": loss["tau"],
                "exit_slope": loss["exit_slope"],
                "focus_layer": loss.get("focus_layer"),
                "Layer maps": c.get("layer_maps") or "",
            }
        )
    return pd.DataFrame(rows)
