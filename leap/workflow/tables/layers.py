"""The layer analyses' tables (3, 4, 8, 9, 13) and layer mixing, SLED-style."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from leap.workflow.records import PairEval, latency_runs, layer_runs, mean_of, pair_splits, retrieval_runs
from leap.workflow.results import (
    Results,
    extra_variants,
    mean,
    runs,
)
from leap.workflow.tables.registry import table

log = logging.getLogger(__name__)


def _layers_table(res: Results, variants: Sequence[str]) -> pd.DataFrame | None:
    cols = {v: rs for v in variants if (rs := layer_runs(res, v))}
    if not cols:
        return None
    L = max(r.num_layers for rs in cols.values() for r in rs.records)
    df = pd.DataFrame({"Layer": list(range(1, L + 1))})
    for v, rs in cols.items():
        sim = rs.mean_list(lambda r: r.similarity_to_final)
        cum = rs.mean_list(lambda r: r.cumulative_exit)
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
    rs = layer_runs(res, variant)
    if not rs:
        return None
    sim = rs.mean_list(lambda r: r.similarity_to_final)
    nn = rs.mean_list(lambda r: r.nn_at_10)
    fail = rs.mean_list(lambda r: r.nn_failure_rate)
    cum = rs.mean_list(lambda r: r.cumulative_exit)
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


@table("table8_thresholds")
def table8_thresholds(res: Results, variant: str = "leap") -> pd.DataFrame | None:
    """Table 8 (decision thresholds): per theta, exit rate, STS-B of the exited embeddings,
    NN@10 agreement of the exited embeddings with full depth and its failure rate (overlap
    < 0.5), layer reduction, and the measured speedup at batch 1 where it was timed (the
    config's theta)."""
    stsb = pair_splits(res, variant, "stsb")
    lay = layer_runs(res, variant).records
    if not stsb or not lay or lay[0].theta_sweep is None:
        return None
    lat = latency_runs(res, variant)
    theta_timed = lat.records[0].extra["exit"]["theta"] if lat else None
    sp = lat.mean(lambda r: r.speedup(1)) if lat else None
    rows = []
    for i, p in enumerate(lay[0].theta_sweep):
        th = p["theta"]
        nn_pts = [r.theta_sweep[i] for r in lay]
        st_pts = [q for r in stsb.records for q in r.frontier.points("convergence") if abs(q.setting - th) < 1e-9]
        rows.append(
            {
                "theta": th,
                "Exit rate": mean_of(st_pts, lambda q: q.exit_rate),
                "STS-B (exit)": mean_of(st_pts, lambda q: q.quality),
                "NN@10": mean([q["nn_at_10"] for q in nn_pts]),
                "NN@10 Fail": mean([q["nn10_failure"] for q in nn_pts]),
                "Layer Red.": mean_of(st_pts, lambda q: q.layer_reduction),
                "Speedup (b=1)": sp if theta_timed is not None and abs(th - theta_timed) < 1e-9 else None,
            }
        )
    return pd.DataFrame(rows)


@table("table9_similarity")
def table9_similarity(res: Results) -> pd.DataFrame | None:
    """Table 9: similarity to final per layer for every trained variant, plus anisotropy of LEAP and baseline."""
    sets = {v: rs for v in res if (rs := layer_runs(res, v))}
    if not sets:
        return None
    L = max(r.num_layers for rs in sets.values() for r in rs.records)
    df = pd.DataFrame({"Layer": list(range(1, L + 1))})
    for v, rs in sets.items():
        sim = rs.mean_list(lambda r: r.similarity_to_final)
        df[v] = sim + [None] * (L - len(sim))
    for v in ("baseline", "leap"):
        rs = layer_runs(res, v)
        if rs:
            an = rs.mean_list(lambda r: r.anisotropy)
            df[f"anisotropy ({v})"] = an + [None] * (L - len(an))
    return df


@table("table13_nn_failure")
def table13_nn_failure(res: Results) -> pd.DataFrame | None:
    """Table 13: NN@10 and its failure rate per layer (LEAP)."""
    df = table4_per_layer(res)
    return None if df is None else df[["Layer", "NN@10", "NN@10 Fail"]]


@table("table_layer_mixing")
def layer_mixing_table(res: Results) -> pd.DataFrame | None:
    """Layer mixing, SLED-style (:mod:`leap.workflow.layer_mixing`): per model and benchmark (STS-B
    test Spearman; BEIR test NDCG@10), the final layer against the mean of the last two and
    three layers, the first-last average, and the contrast ``p_L + a (p_L - p_l)`` with ``a``
    and ``l`` chosen on dev (mean over seeds)."""
    rows = []
    for v in res:
        if v.startswith(("abl_", "beta")):
            continue
        stsb = [PairEval.from_dict(r).layer_mixing for r in runs(res, v, "stsb")]
        sources = [("STS-B", [m for m in stsb if m])]
        for ds, rs in sorted(retrieval_runs(res, v).items()):
            sources.append((ds, [r.layer_mixing for r in rs.records if r.layer_mixing]))
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
