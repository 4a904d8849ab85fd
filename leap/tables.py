"""The paper's tables from the evaluation JSONs, as CSV and Markdown.

Each builder takes the JSON files its table needs and returns a ``pandas.DataFrame``
with the paper's column names; :func:`write_table` writes both formats atomically.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from leap.files import write_text


def _load(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def table2_cross_distillation(diagnostics: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """Table 2: the exit diagnostic on published (distilled) checkpoints.

    Args:
        diagnostics: model name -> ``diagnostic.json`` (:func:`leap.diagnostic.diagnose`).
    """
    rows = []
    for name, path in diagnostics.items():
        d = _load(path)
        l_min = d["exit"]["min_layer"]
        sim = d["similarity_to_final"]
        rows.append(
            {
                "Model": name,
                "Layers": len(d["layers"]),
                "l_min": l_min,
                "Sim. to final @ l_min": sim[l_min - 1],
                "Exit rate (theta=%.2f)" % d["exit"]["theta"]: d["exit_rate"],
                "E[l]": d["expected_exit_layer"],
                "Layer reduction": d["layer_reduction"],
                "Monitoring overhead": d["monitoring_overhead"],
                "Verdict": d["verdict"],
            }
        )
    return pd.DataFrame(rows)


def write_table(df: pd.DataFrame, csv_path: str | os.PathLike, md_path: str | os.PathLike, floatfmt: str = ".3f") -> None:
    """Write ``df`` as CSV and as a Markdown table (atomically)."""
    write_text(csv_path, df.to_csv(index=False))
    cols = list(df.columns)
    def fmt(v: object) -> str:  # a value not measured for that row is left empty, never "nan"
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    write_text(md_path, "\n".join(lines) + "\n")


# -- collecting evaluation JSONs -------------------------------------------------------------
_EVAL = re.compile(r"(?P<variant>[^/]+)/seed(?P<seed>\d+)/eval/(?P<name>[^/]+)\.json$")


def collect(paths: Iterable[str | os.PathLike]) -> dict[str, dict[int, dict[str, dict]]]:
    """``{variant: {seed: {eval_name: json}}}`` from ``.../{variant}/seed{seed}/eval/{name}.json`` paths."""
    out: dict[str, dict[int, dict[str, dict]]] = {}
    for p in paths:
        m = _EVAL.search(str(p).replace(os.sep, "/"))
        if not m:
            continue
        out.setdefault(m["variant"], {}).setdefault(int(m["seed"]), {})[m["name"]] = _load(p)
    return out


def _runs(res: dict, variant: str, name: str) -> list[dict]:
    return [evals[name] for _, evals in sorted(res.get(variant, {}).items()) if name in evals]


def _mean(xs: Sequence[float | None]) -> float | None:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else None


def _mean_list(lists: Sequence[Sequence[float | None]]) -> list[float | None]:
    return [_mean(col) for col in zip(*lists)] if lists else []


def _ci(values: Sequence[float]) -> str:
    from leap.evaluate import seed_summary

    s = seed_summary(values)
    if s["n"] == 0:
        return ""
    if s["n"] == 1:
        return f"{s['mean']:.3f} (1 seed)"
    return f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def _split(d: dict, split: str = "test") -> dict:
    return d["splits"].get(split) or next(iter(d["splits"].values()))


PAPER_VARIANTS = ("baseline", "leap", "fixed_depth", "deebert", "adaptive_layer", "layerskip")


def extra_variants(res: dict) -> list[str]:
    """Variants beyond the paper's rows (e.g. ``leap_fix`` or a config's ``custom_variants``):
    reported beside ``leap`` wherever LEAP is. Ablation (``abl_*``) and sweep (``beta*``)
    runs have tables of their own."""
    return sorted(v for v in res if v not in PAPER_VARIANTS and not v.startswith(("abl_", "beta")))


def table1_main(res: dict, variants: Sequence[str] | None = None) -> pd.DataFrame | None:
    """Table 1: STS-B with 95% CI over seeds (exited and full), exit rate, E[l], layer reduction,
    speedup; QQP columns where the QQP evaluation ran."""
    rows = []
    if variants is None:
        variants = ["baseline", "leap", *extra_variants(res), *PAPER_VARIANTS[2:]]
    for v in variants:
        if v == "deebert":
            runs = _runs(res, v, "stsb_heads")
            if runs:
                t = [r["test"] for r in runs]
                rows.append({"Model": v, "Seeds": len(runs), "STS-B (exit)": _ci([x["spearman_exit"] for x in t]),
                             "STS-B (full)": "", "Exit rate": _mean([x["exit_rate"] for x in t]),
                             "E[l]": _mean([x["expected_exit_layer"] for x in t]),
                             "Layer Red.": _mean([x["layer_reduction"] for x in t]), "Speedup (b=1)": None})
            continue
        runs = [_split(r) for r in _runs(res, v, "stsb")]
        if not runs:
            continue
        lat = _runs(res, v, "latency")
        sp = _mean([next((r["speedup"] for r in l["rows"] if r["batch_size"] == 1), None) for l in lat]) if lat else None
        row = {"Model": v, "Seeds": len(runs), "STS-B (exit)": _ci([r["spearman_exit"] for r in runs]),
               "STS-B (full)": _ci([r["spearman_full"] for r in runs]),
               "Exit rate": _mean([r["exit_rate"] for r in runs]),
               "E[l]": _mean([r["expected_exit_layer"] for r in runs]),
               "Layer Red.": _mean([r["layer_reduction"] for r in runs]), "Speedup (b=1)": sp}
        qqp = [_split(r) for r in _runs(res, v, "qqp")]
        if qqp:  # QQP 10K pairs (full configuration): Spearman and average precision, exited and full
            row |= {"QQP (exit)": _ci([r["spearman_exit"] for r in qqp]), "QQP (full)": _ci([r["spearman_full"] for r in qqp]),
                    "QQP AP (exit)": _mean([r.get("ap_exit") for r in qqp]), "QQP AP (full)": _mean([r.get("ap_full") for r in qqp])}
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def _layers_table(res: dict, variants: Sequence[str]) -> pd.DataFrame | None:
    cols = {}
    for v in variants:
        runs = _runs(res, v, "layers")
        if runs:
            cols[v] = runs
    if not cols:
        return None
    L = max(r["num_layers"] for runs in cols.values() for r in runs)
    df = pd.DataFrame({"Layer": list(range(1, L + 1))})
    for v, runs in cols.items():
        sim = _mean_list([r["similarity_to_final"] for r in runs])
        cum = _mean_list([r["cumulative_exit"] for r in runs])
        df[f"Sim. to final ({v})"] = sim + [None] * (L - len(sim))
        df[f"Cum. exit ({v})"] = cum + [None] * (L - len(cum))
    return df


def table3_layerwise(res: dict) -> pd.DataFrame | None:
    """Table 3: similarity to final and cumulative exit at theta per layer, baseline vs LEAP
    (and any extra exit objective beside it)."""
    return _layers_table(res, ("baseline", "leap", *extra_variants(res))) if "leap" in res and "baseline" in res else None


def table4_per_layer(res: dict, variant: str = "leap") -> pd.DataFrame | None:
    """Table 4 / Table 8 / Table 13: per layer similarity, NN@10, NN@10 failure, cumulative exit, viable."""
    runs = _runs(res, variant, "layers")
    if not runs:
        return None
    sim = _mean_list([r["similarity_to_final"] for r in runs])
    nn = _mean_list([r["nn_at_10"] for r in runs])
    fail = _mean_list([r["nn_failure_rate"] for r in runs])
    cum = _mean_list([r["cumulative_exit"] for r in runs])
    L = len(sim)
    return pd.DataFrame({"Layer": range(1, L + 1), "Sim. to final": sim, "NN@10": nn, "NN@10 Fail": fail,
                         "Cum. exit": cum, "Layer Red. if exit here": [L / l for l in range(1, L + 1)],
                         "Viable": [bool(s is not None and n is not None and s >= 0.95 and n >= 0.80) for s, n in zip(sim, nn)]})


def table5_pareto(res: dict, variant: str = "leap") -> pd.DataFrame | None:
    """Table 5: theta sweep: exit rate, E[l], layer reduction, STS-B (test, mean over seeds)."""
    runs = [_split(r) for r in _runs(res, variant, "stsb")]
    if not runs:
        return None
    rows = []
    for i, s in enumerate(runs[0]["theta_sweep"]):
        pts = [r["theta_sweep"][i] for r in runs]
        rows.append({"theta": s["theta"], "Exit rate": _mean([p["exit_rate"] for p in pts]),
                     "E[l]": _mean([p["expected_exit_layer"] for p in pts]),
                     "Layer Red.": _mean([p["layer_reduction"] for p in pts]), "STS-B": _mean([p["spearman"] for p in pts])})
    return pd.DataFrame(rows)


def _beir(res: dict, variant: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for _, evals in sorted(res.get(variant, {}).items()):
        for name, d in evals.items():
            if name.startswith("beir_"):
                out.setdefault(d["dataset"], []).append(d)
    return out


def table6_beir(res: dict, k: int = 10) -> pd.DataFrame | None:
    """Table 6 (k=10) and Tables 15/16 columns: baseline full, LEAP full, LEAP early exit."""
    base, leap = _beir(res, "baseline"), _beir(res, "leap")
    if not base or not leap:
        return None
    rows = []
    for ds in sorted(set(base) & set(leap)):
        b = _mean([d["full"][f"NDCG@{k}"] for d in base[ds]])
        lf = _mean([d["full"][f"NDCG@{k}"] for d in leap[ds]])
        le = _mean([d["exit"][f"NDCG@{k}"] for d in leap[ds]])
        rows.append({"Dataset": ds, "Baseline": b, "LEAP full": lf, "LEAP EE": le,
                     "Delta B->L (%)": 100 * (lf - b) / b if b else None,
                     "Delta Full->EE (%)": 100 * (le - lf) / lf if lf else None,
                     "Docs exiting early": _mean([d["exit"]["corpus_exit"]["exit_rate"] for d in leap[ds]]),
                     "Queries exiting early": _mean([d["exit"]["query_exit"]["exit_rate"] for d in leap[ds]])})
        for v in extra_variants(res):
            runs = _beir(res, v).get(ds)
            if runs:
                rows[-1].update({f"{v} full": _mean([d["full"][f"NDCG@{k}"] for d in runs]),
                                 f"{v} EE": _mean([d["exit"][f"NDCG@{k}"] for d in runs]),
                                 f"{v} docs exiting early": _mean([d["exit"]["corpus_exit"]["exit_rate"] for d in runs])})
    return pd.DataFrame(rows)


def table_beir_cutoffs(res: dict, ks: Sequence[int]) -> pd.DataFrame | None:
    """Tables 15 / 16: baseline vs LEAP at full inference at other cutoffs."""
    base, leap = _beir(res, "baseline"), _beir(res, "leap")
    if not base or not leap:
        return None
    rows = []
    for ds in sorted(set(base) & set(leap)):
        row = {"Dataset": ds}
        for k in ks:
            b = _mean([d["full"][f"NDCG@{k}"] for d in base[ds]])
            l = _mean([d["full"][f"NDCG@{k}"] for d in leap[ds]])
            row.update({f"Baseline NDCG@{k}": b, f"LEAP NDCG@{k}": l, f"Delta@{k} (%)": 100 * (l - b) / b if b else None})
        rows.append(row)
    return pd.DataFrame(rows)


def table7_latency(res: dict, variants: Sequence[str] | None = None) -> pd.DataFrame | None:
    """Table 7: full vs exit latency per batch size; the device is part of the table."""
    rows = []
    for v in variants or ("leap", *extra_variants(res), "baseline"):
        for seed, evals in sorted(res.get(v, {}).items()):
            if "latency" not in evals:
                continue
            d = evals["latency"]
            for r in d["rows"]:
                rows.append({"Model": v, "Seed": seed, "Device": d.get("device_name") or d.get("device"),
                             "dtype": d.get("dtype"), "Batch": r["batch_size"], "Full (ms)": r["full_ms"],
                             "Exit (ms)": r["exit_ms"], "Speedup": r["speedup"], "Layer Red.": r["layer_reduction"],
                             "Efficiency": r["efficiency"], "Monitoring overhead": r["monitoring_overhead"]})
    return pd.DataFrame(rows) if rows else None


def table9_similarity(res: dict) -> pd.DataFrame | None:
    """Table 9: similarity to final per layer for every trained variant, plus anisotropy of LEAP and baseline."""
    variants = [v for v in res if _runs(res, v, "layers")]
    if not variants:
        return None
    L = max(r["num_layers"] for v in variants for r in _runs(res, v, "layers"))
    df = pd.DataFrame({"Layer": list(range(1, L + 1))})
    for v in variants:
        sim = _mean_list([r["similarity_to_final"] for r in _runs(res, v, "layers")])
        df[v] = sim + [None] * (L - len(sim))
    for v in ("baseline", "leap"):
        runs = _runs(res, v, "layers")
        if runs:
            an = _mean_list([r["anisotropy"] for r in runs])
            df[f"anisotropy ({v})"] = an + [None] * (L - len(an))
    return df


def table10_strategies(res: dict) -> pd.DataFrame | None:
    """Table 10: exit strategies: convergence 0.93/0.95/0.99, PABEE, DeeBERT heads, fixed depth,
    and the two extra objectives. Qual. = STS-B relative to the same model's full depth."""
    leap = [_split(r) for r in _runs(res, "leap", "stsb")]
    if not leap:
        return None
    full = _mean([r["spearman_full"] for r in leap])
    rows = []
    for th in (0.93, 0.95, 0.99):
        pts = [p for r in leap for p in r["theta_sweep"] if abs(p["theta"] - th) < 1e-9]
        if pts:
            s = _mean([p["spearman"] for p in pts])
            rows.append({"Strategy": f"Convergence theta={th:.2f} (LEAP)", "STS-B": s, "Qual.": s / full,
                         "Layer Red.": _mean([p["layer_reduction"] for p in pts]), "Exit rate": _mean([p["exit_rate"] for p in pts])})
    pab = [r["pabee"] for r in leap]
    s = _mean([p["spearman"] for p in pab])
    rows.append({"Strategy": "PABEE (LEAP)", "STS-B": s, "Qual.": s / full,
                 "Layer Red.": _mean([p["layer_reduction"] for p in pab]), "Exit rate": _mean([p["exit_rate"] for p in pab])})
    heads = _runs(res, "deebert", "stsb_heads")
    base = [_split(r) for r in _runs(res, "baseline", "stsb")]
    if heads and base:
        s = _mean([h["test"]["spearman_exit"] for h in heads])
        bf = _mean([r["spearman_full"] for r in base])
        rows.append({"Strategy": "DeeBERT heads (baseline)", "STS-B": s, "Qual.": s / bf,
                     "Layer Red.": _mean([h["test"]["layer_reduction"] for h in heads]),
                     "Exit rate": _mean([h["test"]["exit_rate"] for h in heads])})
    fixed = [_split(r) for r in _runs(res, "fixed_depth", "stsb")]
    if fixed and base:
        s = _mean([r["spearman_full"] for r in fixed])
        Lb = len(base[0]["exit_distribution"])
        Lf = len(fixed[0]["exit_distribution"])
        rows.append({"Strategy": f"Fixed depth ({Lf} layers)", "STS-B": s, "Qual.": s / _mean([r["spearman_full"] for r in base]),
                     "Layer Red.": Lb / Lf, "Exit rate": None})
    for v in ("adaptive_layer", "layerskip"):
        runs = [_split(r) for r in _runs(res, v, "stsb")]
        if runs:
            s = _mean([r["spearman_exit"] for r in runs])
            rows.append({"Strategy": f"Convergence theta=0.95 ({v})", "STS-B": s, "Qual.": s / _mean([r["spearman_full"] for r in runs]),
                         "Layer Red.": _mean([r["layer_reduction"] for r in runs]), "Exit rate": _mean([r["exit_rate"] for r in runs])})
    return pd.DataFrame(rows)


def table11_ablation(res: dict, rows_: Sequence[tuple[str, str]] = (("abl_final", "L_final"), ("abl_inter", "+ L_inter"),
                                                                      ("abl_contrast", "+ L_contrast"), ("abl_exit", "+ L_exit (full LEAP)"))) -> pd.DataFrame | None:
    """Table 11: each loss term added in turn. ``abl_exit`` is LEAP itself (every term): when it
    was not trained separately, the ``leap`` runs fill its row (the Variant column says so)."""
    rows = []
    for v, label in rows_:
        runs = [_split(r) for r in _runs(res, v, "stsb")]
        if not runs and v == "abl_exit":
            v, runs = "leap", [_split(r) for r in _runs(res, "leap", "stsb")]
        if runs:
            rows.append({"Configuration": label, "Variant": v, "STS-B (full)": _mean([r["spearman_full"] for r in runs]),
                         "STS-B (exit)": _mean([r["spearman_exit"] for r in runs]), "Exit rate": _mean([r["exit_rate"] for r in runs]),
                         "E[l]": _mean([r["expected_exit_layer"] for r in runs]), "Layer Red.": _mean([r["layer_reduction"] for r in runs])})
    return pd.DataFrame(rows) if rows else None


def table12_beta(res: dict) -> pd.DataFrame | None:
    """Table 12: the beta sweep (reduced training)."""
    rows = []
    for v in sorted(x for x in res if re.fullmatch(r"beta[0-9.]+", x)):
        runs = [_split(r) for r in _runs(res, v, "stsb")]
        if runs:
            rows.append({"beta": float(v[4:]), "Exit rate": _mean([r["exit_rate"] for r in runs]),
                         "Layer Red.": _mean([r["layer_reduction"] for r in runs]),
                         "STS-B (exit)": _mean([r["spearman_exit"] for r in runs]), "STS-B (full)": _mean([r["spearman_full"] for r in runs])})
    return pd.DataFrame(rows).sort_values("beta") if rows else None


def table14_hyperparameters(train_configs: dict[str, str | os.PathLike]) -> pd.DataFrame | None:
    """Table 14: the resolved training config of each variant (first seed)."""
    if not train_configs:
        return None
    rows = []
    for v, p in train_configs.items():
        c = _load(p)
        loss = c.pop("loss")
        rows.append({"Variant": v, "Student": c["student"], "Layers": c["student_layers"], "Teacher": c.get("teacher"),
                     "Epochs": c["epochs"], "Steps": c["steps"], "Batch": c["batch_size"], "lr": c["lr"],
                     "Max seq": c["max_seq_length"], "Train sentences": c["n_train"], "Objective": c["objective"],
                     "Terms": "+".join(loss["terms"]), "alpha": loss["alpha"], "beta": loss["beta"], "delta": loss["delta"],
                     "eps": loss["eps"], "gamma": loss["gamma"], "tau": loss["tau"], "exit_slope": loss["exit_slope"],
                     "min_layer": loss["min_layer"]})
    return pd.DataFrame(rows)


def _columns(df: pd.DataFrame | None, cols: list[str]) -> pd.DataFrame | None:
    return None if df is None else df[cols]


TABLES = {
    "table1_main": table1_main,
    "table3_layerwise": table3_layerwise,
    "table4_per_layer": table4_per_layer,
    "table5_pareto": table5_pareto,
    "table6_beir": table6_beir,
    "table7_latency": table7_latency,
    "table8_thresholds": lambda r: _columns(table4_per_layer(r), ["Layer", "Sim. to final", "NN@10", "NN@10 Fail", "Layer Red. if exit here"]),
    "table9_similarity": table9_similarity,
    "table10_strategies": table10_strategies,
    "table11_ablation": table11_ablation,
    "table12_beta": table12_beta,
    "table13_nn_failure": lambda r: _columns(table4_per_layer(r), ["Layer", "NN@10", "NN@10 Fail"]),
    "table15_beir_ndcg5_10": lambda r: table_beir_cutoffs(r, (5, 10)),
    "table16_beir_ndcg1_3": lambda r: table_beir_cutoffs(r, (1, 3)),
}


def build_tables(eval_paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 train_configs: dict[str, str | os.PathLike] | None = None,
                 diagnostics: dict[str, str | os.PathLike] | None = None, log=print) -> dict[str, str]:
    """Write every table whose inputs exist (CSV + Markdown) into ``out_dir``; returns
    ``{table: "written" | "skipped: <why>"}`` (also written as ``index.json``)."""
    from leap.files import write_json

    res = collect(eval_paths)
    out = Path(out_dir)
    status: dict[str, str] = {}
    builders = dict(TABLES)
    builders["table14_hyperparameters"] = lambda r: table14_hyperparameters(train_configs or {})
    builders["table2_cross_distillation"] = lambda r: table2_cross_distillation(diagnostics) if diagnostics else None
    for name, fn in sorted(builders.items(), key=lambda kv: int(re.search(r"\d+", kv[0]).group())):
        df = fn(res)
        if df is None or df.empty:
            status[name] = f"skipped: its runs are missing (have variants {sorted(res)})"
            log(f"{name}: {status[name]}")
            continue
        write_table(df, out / f"{name}.csv", out / f"{name}.md")
        status[name] = "written"
    write_json(out / "index.json", status)
    return status
