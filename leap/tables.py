"""The paper's tables, and the frontier, from the evaluation JSONs (CSV and Markdown).

Each builder takes the collected results (:func:`leap.results.collect`) and returns a
``pandas.DataFrame`` with the paper's column names (or ``None`` when its runs are
missing); :func:`write_table` writes both formats atomically. Intervals over seeds are
95% t-intervals (:func:`leap.results.seed_summary`); the seed values are listed beside.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leap.errors import LeapError
from leap.files import write_json, write_text
from leap.frontier import BAR_EXIT_RATE, BAR_REDUCTION, NOT_DEPLOYABLE, FrontierPoint, truncation_quality_at
from leap.results import (
    ITEMS_FILE,
    PAPER_VARIANTS,
    Results,
    beir_runs,
    collect,
    extra_variants,
    load_json,
    mean,
    mean_list,
    report_items,
    runs,
    seed_interval,
    seed_summary,
    seed_values,
    split_of,
    table_order,
)

log = logging.getLogger(__name__)

"""The issue's bar for a useful exit point: >= 1.4x fewer layers with >= 80% of inputs exiting."""


def write_table(
    df: pd.DataFrame, csv_path: str | os.PathLike, md_path: str | os.PathLike, floatfmt: str = ".3f"
) -> None:
    """Write ``df`` as CSV and as a Markdown table (atomically); a value not measured is left
    empty, never "nan"."""
    write_text(csv_path, df.to_csv(index=False))
    write_text(md_path, df.to_markdown(index=False, floatfmt=floatfmt, missingval="") + "\n")


TABLE_BUILDERS: dict[str, tuple[Callable[..., pd.DataFrame | None], str | None]] = {}
"""``name -> (builder, what it reads besides the results: None, "train_configs" or "diagnostics")``;
the tables themselves are listed in ``leap/resources/report_items.yaml``."""


def table(name: str, needs: str | None = None) -> Callable:
    """Register a table builder under ``name`` (its entry in the report items file)."""

    def register(fn: Callable) -> Callable:
        TABLE_BUILDERS[name] = (fn, needs)
        return fn

    return register


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


def _layers_table(res: Results, variants: Sequence[str]) -> pd.DataFrame | None:
    cols = {v: runs(res, v, "layers") for v in variants if runs(res, v, "layers")}
    if not cols:
        return None
    L = max(r["num_layers"] for rs in cols.values() for r in rs)
    df = pd.DataFrame({"Layer": list(range(1, L + 1))})
    for v, rs in cols.items():
        sim = mean_list([r["similarity_to_final"] for r in rs])
        cum = mean_list([r["cumulative_exit"] for r in rs])
        df[f"Sim. to final ({v})"] = sim + [None] * (L - len(sim))
        df[f"Cum. exit ({v})"] = cum + [None] * (L - len(cum))
    return df


@table("table3_layerwise")
def table3_layerwise(res: Results) -> pd.DataFrame | None:
    """Table 3: similarity to final and cumulative exit at the config's theta per layer,
    baseline vs LEAP (and every extra exit objective)."""
    if "leap" not in res or "baseline" not in res:
        return None
    return _layers_table(res, ("baseline", "leap", *extra_variants(res)))


@table("table4_per_layer")
def table4_per_layer(res: Results, variant: str = "leap") -> pd.DataFrame | None:
    """Table 4 / Table 13: per layer similarity, NN@10, NN@10 failure, cumulative exit, viable."""
    rs = runs(res, variant, "layers")
    if not rs:
        return None
    sim = mean_list([r["similarity_to_final"] for r in rs])
    nn = mean_list([r["nn_at_10"] for r in rs])
    fail = mean_list([r["nn_failure_rate"] for r in rs])
    cum = mean_list([r["cumulative_exit"] for r in rs])
    L = len(sim)
    return pd.DataFrame(
        {
            "Layer": range(1, L + 1),
            "Sim. to final": sim,
            "NN@10": nn,
            "NN@10 Fail": fail,
            "Cum. exit": cum,
            "Layer Red. if exit here": [L / l for l in range(1, L + 1)],
            "Viable": [bool(s is not None and n is not None and s >= 0.95 and n >= 0.80) for s, n in zip(sim, nn)],
        }
    )


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


@table("table8_thresholds")
def table8_thresholds(res: Results, variant: str = "leap") -> pd.DataFrame | None:
    """Table 8 (decision thresholds): per theta, exit rate, STS-B of the exited embeddings,
    NN@10 agreement of the exited embeddings with full depth and its failure rate (overlap
    < 0.5), layer reduction, and the measured speedup at batch 1 where it was timed (the
    config's theta)."""
    stsb = [split_of(r) for r in runs(res, variant, "stsb")]
    lay = runs(res, variant, "layers")
    if not stsb or not lay or "theta_sweep" not in lay[0]:
        return None
    lat = runs(res, variant, "latency")
    theta_timed = lat[0]["exit"]["theta"] if lat else None
    sp = mean([next((r["speedup"] for r in l["rows"] if r["batch_size"] == 1), None) for l in lat]) if lat else None
    rows = []
    for i, p in enumerate(lay[0]["theta_sweep"]):
        th = p["theta"]
        nn_pts = [r["theta_sweep"][i] for r in lay]
        st_pts = [q for r in stsb for q in _sweep_points(r) if abs(q["setting"] - th) < 1e-9]
        rows.append(
            {
                "theta": th,
                "Exit rate": mean([q["exit_rate"] for q in st_pts]),
                "STS-B (exit)": mean([q["quality"] for q in st_pts]),
                "NN@10": mean([q["nn_at_10"] for q in nn_pts]),
                "NN@10 Fail": mean([q["nn10_failure"] for q in nn_pts]),
                "Layer Red.": mean([q["layer_reduction"] for q in st_pts]),
                "Speedup (b=1)": sp if theta_timed is not None and abs(th - theta_timed) < 1e-9 else None,
            }
        )
    return pd.DataFrame(rows)


@table("table9_similarity")
def table9_similarity(res: Results) -> pd.DataFrame | None:
    """Table 9: similarity to final per layer for every trained variant, plus anisotropy of LEAP and baseline."""
    variants = [v for v in res if runs(res, v, "layers")]
    if not variants:
        return None
    L = max(r["num_layers"] for v in variants for r in runs(res, v, "layers"))
    df = pd.DataFrame({"Layer": list(range(1, L + 1))})
    for v in variants:
        sim = mean_list([r["similarity_to_final"] for r in runs(res, v, "layers")])
        df[v] = sim + [None] * (L - len(sim))
    for v in ("baseline", "leap"):
        rs = runs(res, v, "layers")
        if rs:
            an = mean_list([r["anisotropy"] for r in rs])
            df[f"anisotropy ({v})"] = an + [None] * (L - len(an))
    return df


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
    rows = []
    for v in (variant, *extra_variants(res)):
        rs = [split_of(r) for r in runs(res, v, "stsb")]
        if not rs:
            continue
        full = mean([r["spearman_full"] for r in rs])
        for th in thetas:
            pts = [p for r in rs for p in _sweep_points(r) if abs(p["setting"] - th) < 1e-9]
            if pts:
                s = mean([p["quality"] for p in pts])
                rows.append(
                    {
                        "Strategy": f"Convergence theta={th:.2f} ({v})",
                        "STS-B": s,
                        "Qual.": s / full,
                        "Layer Red.": mean([p["layer_reduction"] for p in pts]),
                        "Exit rate": mean([p["exit_rate"] for p in pts]),
                        "Exit advantage": mean([p["exit_advantage"] for p in pts]),
                    }
                )
        pab = [r["frontier"]["at_config"] for r in rs] if rs[0]["frontier"]["at_config"]["rule"] == "pabee" else []
        cfg_pab = [p for r in rs for p in r["frontier"]["sweep"] if p["rule"] == "pabee" and p["setting"] == pabee]
        for label, pts in ((f"PABEE {pabee}", pab or cfg_pab),):
            if pts:
                s = mean([p["quality"] for p in pts])
                rows.append(
                    {
                        "Strategy": f"{label} ({v})",
                        "STS-B": s,
                        "Qual.": s / full,
                        "Layer Red.": mean([p["layer_reduction"] for p in pts]),
                        "Exit rate": mean([p["exit_rate"] for p in pts]),
                        "Exit advantage": mean([p["exit_advantage"] for p in pts]),
                    }
                )
        L = len(rs[0]["spearman_per_layer"])
        l_min = runs(res, v, "stsb")[0]["exit"]["min_layer"]
        for l in sorted({l_min, min(L - 1, l_min + 1)}):
            s = mean([r["spearman_per_layer"][l - 1] for r in rs])
            rows.append(
                {
                    "Strategy": f"Truncation at layer {l} ({v})",
                    "STS-B": s,
                    "Qual.": s / full,
                    "Layer Red.": L / l,
                    "Exit rate": 1.0,
                    "Exit advantage": 0.0,
                }
            )
    heads = runs(res, "deebert", "stsb_heads")
    base = [split_of(r) for r in runs(res, "baseline", "stsb")]
    if heads and base:
        s = mean([h["test"]["spearman_exit"] for h in heads])
        bf = mean([r["spearman_full"] for r in base])
        rows.append(
            {
                "Strategy": "DeeBERT heads, per-pair exit (baseline)",
                "STS-B": s,
                "Qual.": s / bf,
                "Layer Red.": mean([h["test"]["layer_reduction"] for h in heads]),
                "Exit rate": mean([h["test"]["exit_rate"] for h in heads]),
                "Exit advantage": mean([h["frontier"]["at_config"]["exit_advantage"] for h in heads]),
            }
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


@table("table13_nn_failure")
def table13_nn_failure(res: Results) -> pd.DataFrame | None:
    """Table 13: NN@10 and its failure rate per layer (LEAP)."""
    df = table4_per_layer(res)
    return None if df is None else df[["Layer", "NN@10", "NN@10 Fail"]]


# -- the frontier ------------------------------------------------------------------------------------
def _frontier_sources(res: Results) -> list[tuple[str, str, list[dict]]]:
    """``(model, benchmark, [frontier record per seed])`` for every model and benchmark."""
    out = []
    for v in res:
        if v.startswith(("abl_", "beta")):
            continue
        stsb = [split_of(r)["frontier"] for r in runs(res, v, "stsb") if "frontier" in split_of(r)]
        if stsb:
            out.append((v, "STS-B", stsb))
        heads = [h["frontier"] for h in runs(res, v, "stsb_heads") if "frontier" in h]
        if heads:
            out.append((v, "STS-B", heads))
        for ds, rs in sorted(beir_runs(res, v).items()):
            fr = [r["frontier"] for r in rs if "frontier" in r]
            if fr:
                out.append((v, ds, fr))
            fq = [r["frontier_query_only"] for r in rs if "frontier_query_only" in r]
            if fq:
                out.append((v, query_only(ds), fq))
    return out


def query_only(dataset: str) -> str:
    """The benchmark name of a retrieval set in the query-only setting (documents at full depth)."""
    return f"{dataset} (query-only)"


def _latency_speedups(res: Results, variant: str) -> dict[tuple[str, Any], dict[int, float]]:
    """Measured speedups of a variant: ``{("exit", None) or ("truncation", layer): {batch: speedup}}``."""
    out: dict[tuple[str, Any], dict[int, list[float]]] = {}
    for lat in runs(res, variant, "latency"):
        for r in lat["rows"]:
            out.setdefault(("exit", None), {}).setdefault(r["batch_size"], []).append(r["speedup"])
            for l, t in r.get("truncate", {}).items():
                out.setdefault(("truncation", int(l)), {}).setdefault(r["batch_size"], []).append(t["speedup"])
    return {k: {b: float(np.mean(v)) for b, v in d.items()} for k, d in out.items()}


def frontier_table(res: Results) -> pd.DataFrame | None:
    """Every operating point of every model on every benchmark (mean over seeds):
    ``model, benchmark, rule, theta`` (the setting: theta, PABEE theta/patience, entropy
    threshold, or the layer of a truncation), ``exit_rate, mean_exit_layer, layer_reduction,
    quality, truncation_quality_at_same_depth, exit_advantage`` and the measured speedup at
    batch 1 and 32 where the latency stage timed that point (the config's rule and every
    truncation depth from l_min). ``at_config`` marks the config's rule."""
    rows = []
    fixed = [split_of(r) for r in runs(res, "fixed_depth", "stsb")]
    for model, bench, recs in _frontier_sources(res):
        speed = _latency_speedups(res, model)
        trunc = [[FrontierPoint(**p) for p in r["truncation"]] for r in recs]
        L = len(trunc[0])
        for i, p in enumerate(recs[0]["truncation"]):
            q = mean([r["truncation"][i]["quality"] for r in recs])
            sp = speed.get(("truncation", p["setting"]), {})
            rows.append(
                {
                    "model": model,
                    "seeds": len(recs),
                    "benchmark": bench,
                    "rule": "truncation",
                    "theta": p["setting"],
                    "at_config": False,
                    "exit_rate": p["exit_rate"],
                    "mean_exit_layer": p["mean_exit_layer"],
                    "layer_reduction": p["layer_reduction"],
                    "quality": q,
                    "truncation_quality_at_same_depth": q,
                    "exit_advantage": 0.0,
                    "speedup_b1": sp.get(1),
                    "speedup_b32": sp.get(32),
                }
            )
        points = [("sweep", i, p) for i, p in enumerate(recs[0]["sweep"])] + [("at_config", None, recs[0]["at_config"])]
        for kind, i, p in points:
            per_seed = [r["sweep"][i] if kind == "sweep" else r["at_config"] for r in recs]
            el = mean([q["mean_exit_layer"] for q in per_seed])
            sp = speed.get(("exit", None), {}) if kind == "at_config" else {}
            rows.append(
                {
                    "model": model,
                    "seeds": len(recs),
                    "benchmark": bench,
                    "rule": p["rule"],
                    "theta": _setting(p["setting"]),
                    "at_config": kind == "at_config",
                    "exit_rate": mean([q["exit_rate"] for q in per_seed]),
                    "mean_exit_layer": el,
                    "layer_reduction": mean([q["layer_reduction"] for q in per_seed]),
                    "quality": mean([q["quality"] for q in per_seed]),
                    "truncation_quality_at_same_depth": mean(
                        [truncation_quality_at(q["mean_exit_layer"], t) for q, t in zip(per_seed, trunc)]
                    ),
                    "exit_advantage": mean([q["exit_advantage"] for q in per_seed]),
                    "speedup_b1": sp.get(1),
                    "speedup_b32": sp.get(32),
                }
            )
        if model == "baseline" and bench == "STS-B" and fixed:
            Lf = len(fixed[0]["exit_distribution"])
            q = mean([r["spearman_full"] for r in fixed])
            tq = mean([truncation_quality_at(Lf, t) for t in trunc])
            rows.append(
                {
                    "model": "fixed_depth",
                    "seeds": len(fixed),
                    "benchmark": bench,
                    "rule": "fixed_depth",
                    "theta": Lf,
                    "at_config": True,
                    "exit_rate": None,
                    "mean_exit_layer": float(Lf),
                    "layer_reduction": L / Lf,
                    "quality": q,
                    "truncation_quality_at_same_depth": tq,
                    "exit_advantage": None,
                    "speedup_b1": None,
                    "speedup_b32": None,
                }
            )
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
    recs = [r for r in runs(res, model, "stsb") if "dev" in r["splits"] and "test" in r["splits"]]
    if not recs:
        return None
    dev = [r["splits"]["dev"]["frontier"]["sweep"] for r in recs]
    test = [r["splits"]["test"]["frontier"]["sweep"] for r in recs]
    best, best_adv = None, -np.inf
    for i in range(len(dev[0])):
        if dev[0][i]["rule"] in NOT_DEPLOYABLE:
            continue
        rate = mean([d[i]["exit_rate"] for d in dev])
        red = mean([d[i]["layer_reduction"] for d in dev])
        el = mean([d[i]["mean_exit_layer"] for d in dev])
        adv = mean([d[i]["exit_advantage"] for d in dev])
        if rate >= BAR_EXIT_RATE and red >= BAR_REDUCTION and not _one_depth(rate, el) and adv > best_adv:
            best, best_adv = i, adv
    if best is None:
        return None
    pts = [t[best] for t in test]
    s = seed_summary([p["exit_advantage"] for p in pts])
    return {
        "rule": f"{pts[0]['rule']} {_setting(pts[0]['setting'])}",
        "dev_exit_advantage": best_adv,
        "exit_advantage": s["mean"],
        "ci95": f"[{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]" if s["ci_low"] is not None else "",
        "quality": mean([p["quality"] for p in pts]),
        "exit_rate": mean([p["exit_rate"] for p in pts]),
        "layer_reduction": mean([p["layer_reduction"] for p in pts]),
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
                seeds_adv = [r["at_config"]["exit_advantage"] for r in recs]
                for k in parts:
                    parts[k] = [r["at_config"].get(k) for r in recs]
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
    ok = points[(points["layer_reduction"] >= BAR_REDUCTION) & (points["exit_rate"] >= BAR_EXIT_RATE)]
    return ok.loc[ok["exit_advantage"].idxmax()] if len(ok) else None


@table("table_layer_mixing")
def layer_mixing_table(res: Results) -> pd.DataFrame | None:
    """Layer mixing, SLED-style (:mod:`leap.layer_mixing`): per model and benchmark (STS-B
    test Spearman; BEIR test NDCG@10), the final layer against the mean of the last two and
    three layers, the first-last average, and the contrast ``p_L + a (p_L - p_l)`` with ``a``
    and ``l`` chosen on dev (mean over seeds)."""
    rows = []
    for v in res:
        if v.startswith(("abl_", "beta")):
            continue
        sources = [("STS-B", [r["layer_mixing"] for r in runs(res, v, "stsb") if r.get("layer_mixing")])]
        for ds, rs in sorted(beir_runs(res, v).items()):
            sources.append((ds, [r["layer_mixing"] for r in rs if r.get("layer_mixing")]))
        for bench, recs in sources:
            if not recs:
                continue
            con = [r["contrast"] for r in recs if r.get("contrast")]
            final = mean([r["final"] for r in recs])
            contrast = mean([c["quality"] for c in con])
            rows.append(
                {
                    "Model": v,
                    "Benchmark": bench,
                    "Seeds": len(recs),
                    "Final layer": final,
                    "Mean last 2": mean([r.get("mean_last2") for r in recs]),
                    "Mean last 3": mean([r.get("mean_last3") for r in recs]),
                    "First-last": mean([r["first_last"] for r in recs]),
                    "Contrast (dev-chosen)": contrast,
                    "Contrast a / l": " / ".join(f"{c['alpha']:g}@L{c['layer']}" for c in con),
                    "Contrast - final": None if contrast is None or final is None else contrast - final,
                }
            )
    return pd.DataFrame(rows) if rows else None


def _dev_columns(res: Results, model: str, bench: str) -> dict:
    chosen = dev_chosen_point(res, model) if bench == "STS-B" and model in res else None
    keys = ("rule", "exit_advantage", "ci95", "quality", "exit_rate", "layer_reduction")
    return {f"dev_chosen_{k}": (chosen or {}).get(k) for k in keys}


def table_builders(train_configs: dict | None = None, diagnostics: dict | None = None) -> dict:
    """Every table the ``tables`` rule writes, in the report items' order: name -> builder of
    the collected results (with the item's arguments from the items file)."""
    extra = {"train_configs": train_configs or {}, "diagnostics": diagnostics}
    out = {}
    for item in report_items()["tables"]:
        if item.name not in TABLE_BUILDERS:
            raise LeapError(f"table {item.name!r} of {ITEMS_FILE.name} has no builder; register one with @table")
        fn, needs = TABLE_BUILDERS[item.name]
        if needs is None:
            out[item.name] = lambda r, fn=fn, a=item.args: fn(r, **a)
        elif needs == "diagnostics":
            out[item.name] = lambda r, fn=fn, a=item.args: (
                fn(extra["diagnostics"], **a) if extra["diagnostics"] else None
            )
        else:
            out[item.name] = lambda r, fn=fn, a=item.args, n=needs: fn(extra[n], **a)
    return out


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


def build_tables(
    eval_paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    train_configs: dict[str, str | os.PathLike] | None = None,
    diagnostics: dict[str, str | os.PathLike] | None = None,
) -> dict[str, str]:
    """Write every table (CSV + Markdown) into ``out_dir``; a table whose runs are missing is
    written as one row saying so (the file always exists, so the report can list it).
    Returns ``{table: "written" | "skipped: <why>"}`` (also written as ``index.json``)."""
    res = collect(eval_paths)
    out = Path(out_dir)
    status: dict[str, str] = {}
    for name, fn in sorted(table_builders(train_configs, diagnostics).items(), key=lambda kv: table_order(kv[0])):
        df = fn(res)
        if df is None or df.empty:
            status[name] = f"skipped: its runs are missing (have variants {sorted(res)})"
            log.info("%s: %s", name, status[name])
            df = pd.DataFrame({"note": [f"not run in this configuration: {status[name][9:]}"]})
        else:
            status[name] = "written"
        write_table(df, out / f"{name}.csv", out / f"{name}.md")
    write_json(out / "index.json", status)
    return status
