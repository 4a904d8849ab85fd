"""The paper's result tables: main results (1), cross-distillation (2), the Pareto and strategy
tables (5, 10), BEIR (6, 15, 16), latency (7), ablation and beta sweep (11, 12), hyperparameters (14)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from leap.results import (
    PAPER_VARIANTS,
    Results,
    beir_runs,
    extra_variants,
    load_json,
    mean,
    runs,
    seed_interval,
    seed_values,
    split_of,
)
from leap.tables.registry import table

log = logging.getLogger(__name__)


@table("table2_cross_distillation", needs="diagnostics")
def table2_cross_distillation(diagnostics: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """Table 2: the exit diagnostic on published (distilled) checkpoints."""
    rows = []
    for name, path in diagnostics.items():
        d = load_json(path)
        l_min = d["exit"]["min_layer"]
        sim = d["similarity_to_final"]
        rows.append(
            {
                "Model": name,
                "Layers": len(d["layers"]),
                "l_min": l_min,
                "Sim. to final @ l_min": sim[l_min - 1],
                f"Exit rate (theta={d['exit']['theta']:.2f})": d["exit_rate"],
                "E[l]": d["expected_exit_layer"],
                "Layer reduction": d["layer_reduction"],
                "Monitoring overhead": d["monitoring_overhead"],
                "Verdict": d["verdict"],
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
            heads = runs(res, v, "stsb_heads")
            if heads:
                t = [r["test"] for r in heads]
                rows.append(
                    {
                        "Model": "deebert (per-pair exit)",
                        "Seeds": len(heads),
                        "STS-B (exit)": seed_interval([x["spearman_exit"] for x in t]),
                        "STS-B (exit), seeds": seed_values([x["spearman_exit"] for x in t]),
                        "STS-B (full)": "",
                        "Exit rate": mean([x["exit_rate"] for x in t]),
                        "E[l]": mean([x["expected_exit_layer"] for x in t]),
                        "Layer Red.": mean([x["layer_reduction"] for x in t]),
                        "Speedup (b=1)": None,
                    }
                )
            continue
        rs = [split_of(r) for r in runs(res, v, "stsb")]
        if not rs:
            continue
        lat = runs(res, v, "latency")
        sp = mean([next((r["speedup"] for r in l["rows"] if r["batch_size"] == 1), None) for l in lat]) if lat else None
        row = {
            "Model": v,
            "Seeds": len(rs),
            "STS-B (exit)": seed_interval([r["spearman_exit"] for r in rs]),
            "STS-B (exit), seeds": seed_values([r["spearman_exit"] for r in rs]),
            "STS-B (full)": seed_interval([r["spearman_full"] for r in rs]),
            "Exit rate": mean([r["exit_rate"] for r in rs]),
            "E[l]": mean([r["expected_exit_layer"] for r in rs]),
            "Layer Red.": mean([r["layer_reduction"] for r in rs]),
            "Speedup (b=1)": sp,
        }
        qqp = [split_of(r) for r in runs(res, v, "qqp")]
        if qqp:
            row |= {
                "QQP (exit)": seed_interval([r["spearman_exit"] for r in qqp]),
                "QQP (full)": seed_interval([r["spearman_full"] for r in qqp]),
                "QQP AP (exit)": mean([r.get("ap_exit") for r in qqp]),
                "QQP AP (full)": mean([r.get("ap_full") for r in qqp]),
            }
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def _sweep_points(d: dict, rule: str = "convergence") -> list[dict]:
    return [p for p in d["frontier"]["sweep"] if p["rule"] == rule]


@table("table5_pareto")
def table5_pareto(res: Results, variant: str = "leap") -> pd.DataFrame | None:
    """Table 5: the theta sweep on STS-B test (mean over seeds): exit rate, E[l], layer
    reduction, Spearman, and the exit advantage over the model's own truncation."""
    rs = [split_of(r) for r in runs(res, variant, "stsb")]
    if not rs:
        return None
    rows = []
    for i, p in enumerate(_sweep_points(rs[0])):
        pts = [_sweep_points(r)[i] for r in rs]
        rows.append(
            {
                "theta": p["setting"],
                "Exit rate": mean([q["exit_rate"] for q in pts]),
                "E[l]": mean([q["mean_exit_layer"] for q in pts]),
                "Layer Red.": mean([q["layer_reduction"] for q in pts]),
                "STS-B": mean([q["quality"] for q in pts]),
                "Exit advantage": mean([q["exit_advantage"] for q in pts]),
            }
        )
    return pd.DataFrame(rows)


@table("table6_beir")
def table6_beir(res: Results, k: int = 10) -> pd.DataFrame | None:
    """Table 6: NDCG@k, baseline full, LEAP full, LEAP early exit (and every extra exit objective)."""
    base, leap = beir_runs(res, "baseline"), beir_runs(res, "leap")
    if not base or not leap:
        return None
    rows = []
    for ds in sorted(set(base) & set(leap)):
        b = mean([d["full"][f"NDCG@{k}"] for d in base[ds]])
        lf = mean([d["full"][f"NDCG@{k}"] for d in leap[ds]])
        le = mean([d["exit"][f"NDCG@{k}"] for d in leap[ds]])
        row = {
            "Dataset": ds,
            "Baseline": b,
            "LEAP full": lf,
            "LEAP EE": le,
            "Delta B->L (%)": 100 * (lf - b) / b if b else None,
            "Delta Full->EE (%)": 100 * (le - lf) / lf if lf else None,
            "Docs exiting early": mean([d["exit"]["corpus_exit"]["exit_rate"] for d in leap[ds]]),
            "Queries exiting early": mean([d["exit"]["query_exit"]["exit_rate"] for d in leap[ds]]),
        }
        for v in extra_variants(res):
            rs = beir_runs(res, v).get(ds)
            if rs:
                row |= {
                    f"{v} full": mean([d["full"][f"NDCG@{k}"] for d in rs]),
                    f"{v} EE": mean([d["exit"][f"NDCG@{k}"] for d in rs]),
                    f"{v} docs exiting early": mean([d["exit"]["corpus_exit"]["exit_rate"] for d in rs]),
                }
        rows.append(row)
    return pd.DataFrame(rows)


@table("table15_beir_ndcg5_10")
@table("table16_beir_ndcg1_3")
def table_beir_cutoffs(res: Results, ks: Sequence[int]) -> pd.DataFrame | None:
    """Tables 15 / 16: baseline vs LEAP at full inference at other cutoffs."""
    base, leap = beir_runs(res, "baseline"), beir_runs(res, "leap")
    if not base or not leap:
        return None
    rows = []
    for ds in sorted(set(base) & set(leap)):
        row: dict[str, Any] = {"Dataset": ds}
        for k in ks:
            b = mean([d["full"][f"NDCG@{k}"] for d in base[ds]])
            l = mean([d["full"][f"NDCG@{k}"] for d in leap[ds]])
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
        for seed, evals in sorted(res.get(v, {}).items()):
            if "latency" not in evals:
                continue
            d = evals["latency"]
            for r in d["rows"]:
                rows.append(
                    {
                        "Model": v,
                        "Seed": seed,
                        "Device": d.get("device_name") or d.get("device"),
                        "dtype": d.get("dtype"),
                        "Batch": r["batch_size"],
                        "Full (ms)": r["full_ms"],
                        "Exit (ms)": r["exit_ms"],
                        "Speedup": r["speedup"],
                        "Speedup 95% CI": _ci(r.get("speedup_ci95")),
                        "Layer Red.": r["layer_reduction"],
                        "Efficiency": r["efficiency"],
                        "Monitoring overhead": r["monitoring_overhead"],
                        "Overhead 95% CI": _ci(r.get("monitoring_overhead_ci95")),
                    }
                )
    return pd.DataFrame(rows) if rows else None


def _strategy_row(label: str, pts: list[dict], full: float | None) -> dict:
    """A Table 10 row from the frontier points of one rule over seeds (mean)."""
    q = mean([p["quality"] for p in pts])
    return {
        "Strategy": label,
        "STS-B": q,
        "Qual.": q / full,
        "Layer Red.": mean([p["layer_reduction"] for p in pts]),
        "Exit rate": mean([p["exit_rate"] for p in pts]),
        "Exit advantage": mean([p["exit_advantage"] for p in pts]),
    }


def _variant_strategies(res: Results, v: str, thetas: Sequence[float], pabee: str) -> list[dict]:
    """Convergence at ``thetas``, PABEE at ``pabee`` and truncation at l_min, l_min + 1 of one variant."""
    rs = [split_of(r) for r in runs(res, v, "stsb")]
    if not rs:
        return []
    full = mean([r["spearman_full"] for r in rs])
    rows = []
    for th in thetas:
        pts = [p for r in rs for p in _sweep_points(r) if abs(p["setting"] - th) < 1e-9]
        if pts:
            rows.append(_strategy_row(f"Convergence theta={th:.2f} ({v})", pts, full))
    pab = [r["frontier"]["at_config"] for r in rs] if rs[0]["frontier"]["at_config"]["rule"] == "pabee" else []
    pab = pab or [p for r in rs for p in r["frontier"]["sweep"] if p["rule"] == "pabee" and p["setting"] == pabee]
    if pab:
        rows.append(_strategy_row(f"PABEE {pabee} ({v})", pab, full))
    L = len(rs[0]["spearman_per_layer"])
    l_min = runs(res, v, "stsb")[0]["exit"]["min_layer"]
    for l in sorted({l_min, min(L - 1, l_min + 1)}):
        s = mean([r["spearman_per_layer"][l - 1] for r in rs])
        row = {"Strategy": f"Truncation at layer {l} ({v})", "STS-B": s, "Qual.": s / full, "Layer Red.": L / l}
        rows.append({**row, "Exit rate": 1.0, "Exit advantage": 0.0})
    return rows


def _comparison_strategies(res: Results) -> list[dict]:
    """Table 10's DeeBERT-heads and fixed-depth rows, relative to the baseline's full depth."""
    heads = runs(res, "deebert", "stsb_heads")
    base = [split_of(r) for r in runs(res, "baseline", "stsb")]
    rows = []
    if heads and base:
        test = [
            h["test"]
            | {"quality": h["test"]["spearman_exit"], "exit_advantage": h["frontier"]["at_config"]["exit_advantage"]}
            for h in heads
        ]
        rows.append(
            _strategy_row("DeeBERT heads, per-pair exit (baseline)", test, mean([r["spearman_full"] for r in base]))
        )
    fixed = [split_of(r) for r in runs(res, "fixed_depth", "stsb")]
    if fixed and base:
        s = mean([r["spearman_full"] for r in fixed])
        Lb, Lf = len(base[0]["exit_distribution"]), len(fixed[0]["exit_distribution"])
        rows.append(
            {
                "Strategy": f"Fixed depth ({Lf} of {Lb} layers, trained)",
                "STS-B": s,
                "Qual.": s / mean([r["spearman_full"] for r in base]),
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
        rs = [split_of(r) for r in runs(res, v, "stsb")]
        if not rs and v == "abl_exit":
            v, rs = "leap", [split_of(r) for r in runs(res, "leap", "stsb")]
        if rs:
            rows.append(
                {
                    "Configuration": label,
                    "Variant": v,
                    "Seeds": len(rs),
                    "STS-B (full)": mean([r["spearman_full"] for r in rs]),
                    "STS-B (exit)": mean([r["spearman_exit"] for r in rs]),
                    "Exit rate": mean([r["exit_rate"] for r in rs]),
                    "E[l]": mean([r["expected_exit_layer"] for r in rs]),
                    "Layer Red.": mean([r["layer_reduction"] for r in rs]),
                }
            )
    return pd.DataFrame(rows) if rows else None


@table("table12_beta")
def table12_beta(res: Results) -> pd.DataFrame | None:
    """Table 12: the beta sweep (reduced training)."""
    rows = []
    for v in sorted(x for x in res if re.fullmatch(r"beta[0-9.]+", x)):
        rs = [split_of(r) for r in runs(res, v, "stsb")]
        if rs:
            rows.append(
                {
                    "beta": float(v[4:]),
                    "Exit rate": mean([r["exit_rate"] for r in rs]),
                    "Layer Red.": mean([r["layer_reduction"] for r in rs]),
                    "STS-B (exit)": mean([r["spearman_exit"] for r in rs]),
                    "STS-B (full)": mean([r["spearman_full"] for r in rs]),
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
