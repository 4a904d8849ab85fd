"""Claims versus measured (``claims.csv``) and the Markdown report.

Every row of SPEC's claims table gets ``claim, paper, measured, unit, verdict, note``.
Verdicts: ``within tolerance`` (inside the paper's CI or the stated tolerance),
``direction holds`` (the qualitative claim holds, the number differs), ``differs``, or
``not measured`` (with the reason in ``note``). Paper layers (of 12) are mapped to the
student's depth by relative position, ``round(l L_s / 12)``, and the note says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from leap.files import write_text
from leap.tables import _beir, _load, _mean, _runs, _split, collect, extra_variants

PAPER_LAYERS = 12


@dataclass(frozen=True)
class Claim:
    claim: str
    paper: float | str
    unit: str
    measure: Callable[[dict, dict], tuple[Any, str]]  # (res, diagnostics) -> (value | None, note)
    tol: float | None = None
    direction: Callable[[float, dict], bool] | None = None


def _stsb(res: dict, v: str, key: str = "spearman_exit") -> list[float]:
    return [_split(r)[key] for r in _runs(res, v, "stsb")]


def _map(l: int, L: int) -> int:
    return max(1, min(L, int(round(l * L / PAPER_LAYERS))))


def _layer_value(res: dict, v: str, key: str, paper_layer: int) -> tuple[Any, str]:
    runs = _runs(res, v, "layers")
    if not runs:
        return None, f"no layers.json for {v}"
    L = runs[0]["num_layers"]
    l = _map(paper_layer, L)
    return _mean([r[key][l - 1] for r in runs]), f"paper L{paper_layer}/12 -> L{l}/{L}"


def _multi(res: dict, v: str, key: str, layers: Iterable[int]) -> tuple[Any, str]:
    vals, notes = [], []
    for l in layers:
        x, n = _layer_value(res, v, key, l)
        if x is None:
            return None, n
        vals.append(round(x, 3))
        notes.append(n)
    return " / ".join(f"{x:.3f}" for x in vals), "; ".join(notes)


def _stsb_mean(v: str, key: str = "spearman_exit") -> Callable:
    def f(res: dict, diag: dict) -> tuple[Any, str]:
        xs = _stsb(res, v, key)
        return (_mean(xs), f"{len(xs)} seed(s), STS-B test") if xs else (None, f"variant {v} not run")
    return f


def _cum(res: dict, diag: dict) -> tuple[Any, str]:
    runs = [_split(r) for r in _runs(res, "leap", "stsb")]
    if not runs:
        return None, "leap not run"
    L = len(runs[0]["exit_distribution"])
    l6, l7 = _map(6, L), _map(7, L)
    c = [_mean([r["cumulative_exit"][l - 1] for r in runs]) for l in (l6, l7)]
    return f"{100 * c[0]:.1f}% / {100 * c[1]:.1f}%", f"paper L6, L7 of 12 -> L{l6}, L{l7} of {L}"


def _el(res: dict, diag: dict) -> tuple[Any, str]:
    runs = [_split(r) for r in _runs(res, "leap", "stsb")]
    if not runs:
        return None, "leap not run"
    return f"{_mean([r['expected_exit_layer'] for r in runs]):.2f} / {_mean([r['layer_reduction'] for r in runs]):.2f}x", \
        f"student of {len(runs[0]['exit_distribution'])} layers"


def _rate(v: str) -> Callable:
    def f(res: dict, diag: dict) -> tuple[Any, str]:
        runs = [_split(r) for r in _runs(res, v, "stsb")]
        return (_mean([r["exit_rate"] for r in runs]), "STS-B test sentences, theta 0.95") if runs else (None, f"{v} not run")
    return f


def _diag(name_part: str, key: str) -> Callable:
    def f(res: dict, diag: dict) -> tuple[Any, str]:
        for name, d in diag.items():
            if name_part.lower() in name.lower():
                return d[key], f"published {name}, built-in sentences, l_min {d['exit']['min_layer']}"
        return None, f"no published checkpoint matching {name_part!r} in this config"
    return f


def _minilm12_sim(res: dict, diag: dict) -> tuple[Any, str]:
    for name, d in diag.items():
        if "l12" in name.lower():
            return d["similarity_to_final"][6], f"published {name}, layer 7"
    return None, "all-MiniLM-L12-v2 not in this config (hub only)"


def _latency(batch: int) -> Callable:
    def f(res: dict, diag: dict) -> tuple[Any, str]:
        lat = _runs(res, "leap", "latency")
        rows = [r for l in lat for r in l["rows"] if r["batch_size"] == batch]
        if not rows:
            return None, "no latency run for leap"
        dev = lat[0].get("device_name") or lat[0].get("device")
        return _mean([r["speedup"] for r in rows]), f"{dev}, {lat[0].get('dtype')}"
    return f


def _latency_ms(res: dict, diag: dict) -> tuple[Any, str]:
    lat = _runs(res, "leap", "latency")
    rows = [r for l in lat for r in l["rows"] if r["batch_size"] == 1]
    if not rows:
        return None, "no latency run for leap"
    return f"{_mean([r['full_ms'] for r in rows]):.2f} -> {_mean([r['exit_ms'] for r in rows]):.2f}", \
        f"{lat[0].get('device_name') or lat[0].get('device')}, batch 1"


def _overhead(res: dict, diag: dict) -> tuple[Any, str]:
    lat = _runs(res, "leap", "latency")
    rows = [r for l in lat for r in l["rows"] if r["batch_size"] == 1]
    return (_mean([r["monitoring_overhead"] for r in rows]), "batch 1") if rows else (None, "no latency run for leap")


def _beta(res: dict, diag: dict) -> tuple[Any, str]:
    vs = sorted(v for v in res if v.startswith("beta"))
    runs = [(v, _split(r)) for v in vs for r in _runs(res, v, "stsb")]
    if not runs:
        return None, "beta sweep not run"
    rates = [r["exit_rate"] for _, r in runs]
    red = [r["layer_reduction"] for _, r in runs]
    return f"exit {100 * min(rates):.1f}-{100 * max(rates):.1f}%, {min(red):.2f}-{max(red):.2f}x", f"{len(vs)} betas"


def _beir_delta(k: int, full_vs: str = "baseline") -> Callable:
    def f(res: dict, diag: dict) -> tuple[Any, str]:
        base, leap = _beir(res, "baseline"), _beir(res, "leap")
        ds = sorted(set(base) & set(leap))
        if not ds:
            return None, "BEIR not run for baseline and leap"
        deltas = []
        for d in ds:
            b = _mean([x["full"][f"NDCG@{k}"] for x in base[d]])
            l = _mean([x["full"][f"NDCG@{k}"] for x in leap[d]])
            deltas.append(100 * (l - b) / b if b else 0.0)
        return float(np.mean(deltas)), f"mean relative change over {', '.join(ds)}"
    return f


def _beir_ee(name: str) -> Callable:
    def f(res: dict, diag: dict) -> tuple[Any, str]:
        leap = _beir(res, "leap")
        if name not in leap:
            return None, f"{name} not evaluated in this config"
        lf = _mean([x["full"]["NDCG@10"] for x in leap[name]])
        le = _mean([x["exit"]["NDCG@10"] for x in leap[name]])
        return 100 * (le - lf) / lf if lf else None, f"{name} NDCG@10, early exit vs LEAP full"
    return f


def _beir_docs(res: dict, diag: dict) -> tuple[Any, str]:
    leap = _beir(res, "leap")
    if not leap:
        return None, "BEIR not run for leap"
    vals = []
    for ds, runs in leap.items():
        for x in runs:
            ce = x["exit"]["corpus_exit"]
            L = len(ce["cumulative_exit"])
            vals.append(ce["cumulative_exit"][_map(6, L) - 1])
    return 100 * _mean(vals), f"documents exited by paper L6 -> student L{_map(6, L)} of {L}"


def _not(reason: str) -> Callable:
    return lambda res, diag: (None, reason)


CLAIMS: list[Claim] = [
    Claim("STS-B, LEAP early exit, theta 0.95, 3 seeds", 0.760, "Spearman", _stsb_mean("leap"), tol=0.006,
          direction=lambda m, r: m >= _mean(_stsb(r, "baseline", "spearman_full") or [np.nan]) - 0.05),
    Claim("STS-B, baseline (no L_exit), 3-seed mean", 0.777, "Spearman", _stsb_mean("baseline", "spearman_full"), tol=0.01),
    Claim("STS-B, fixed 7-layer distilled model", 0.792, "Spearman", _stsb_mean("fixed_depth", "spearman_full"), tol=0.01),
    Claim("STS-B, DeeBERT-style learned exit heads", 0.26, "Spearman",
          lambda r, d: ((_mean([x["test"]["spearman_exit"] for x in _runs(r, "deebert", "stsb_heads")]), "baseline student, entropy threshold calibrated on dev")
                        if _runs(r, "deebert", "stsb_heads") else (None, "deebert not run")), tol=0.05,
          direction=lambda m, r: m < _mean(_stsb(r, "leap") or [np.nan])),
    Claim("STS-B, sentence-transformers/all-MiniLM-L12-v2", 0.831, "Spearman", _not("published checkpoints get the exit diagnostic, not STS-B, in this workflow")),
    Claim("cumulative exit by L6 / L7 (LEAP, theta 0.95)", "38.9% / 91.9%", "%", _cum),
    Claim("expected exit layer / layer reduction", "6.7 / 1.80x", "layer / x", _el),
    Claim("baseline exit rate", 0.0, "fraction", _rate("baseline"), tol=0.01),
    Claim("similarity to final, LEAP: L1, L5, L6, L7", "0.769, 0.919, 0.945, 0.963", "cosine",
          lambda r, d: _multi(r, "leap", "similarity_to_final", (1, 5, 6, 7))),
    Claim("similarity to final, baseline: L6", 0.162, "cosine", lambda r, d: _layer_value(r, "baseline", "similarity_to_final", 6),
          tol=0.05, direction=lambda m, r: m < 0.7),
    Claim("similarity to final at L7, all-MiniLM-L12-v2", 0.29, "cosine", _minilm12_sim, tol=0.05),
    Claim("NN@10, LEAP: L6, L7, L8", "0.79, 0.84, 0.86", "overlap", lambda r, d: _multi(r, "leap", "nn_at_10", (6, 7, 8))),
    Claim("NN@10 failure rate: L4, L7, L8", "41.8%, 0.6%, 0.2%", "fraction", lambda r, d: _multi(r, "leap", "nn_failure_rate", (4, 7, 8))),
    Claim("inter-layer stability, LEAP: average; L2; L12", "0.981; 0.931; 0.994", "cosine",
          lambda r, d: ((lambda runs: (f"{_mean([x['stability_mean'] for x in runs]):.3f}; "
                                       f"{_mean([x['stability'][1] for x in runs]):.3f}; {_mean([x['stability'][-1] for x in runs]):.3f}",
                                       f"L2 and the last layer of {runs[0]['num_layers']}"))(_runs(r, "leap", "layers"))
                        if _runs(r, "leap", "layers") else (None, "leap not run"))),
    Claim("median contraction ratio, LEAP", 0.911, "ratio",
          lambda r, d: ((_mean([x["median_contraction"] for x in _runs(r, "leap", "layers")]), "median over layers")
                        if _runs(r, "leap", "layers") else (None, "leap not run")), tol=0.05, direction=lambda m, r: m < 1.0),
    Claim("exit rate: TinyBERT / MiniLM-L6 / DistilBERT", "0% / 0.7% / 71.5%", "fraction",
          lambda r, d: ((lambda vals: (None, "none of these checkpoints is in this config") if all(v is None for v in vals)
                         else (" / ".join("n/a" if v is None else f"{100 * v:.1f}%" for v in vals),
                               "published checkpoints in this config; n/a = not in config"))(
              [_diag(n, "exit_rate")(r, d)[0] for n in ("tinybert", "minilm-l6", "distilbert")]))),
    Claim("wall-clock speedup batch 1 / 8 / 32 (L4, fp16)", "1.61x / 1.32x / 1.24x", "x",
          lambda r, d: ((lambda vals, note: (None, note) if all(v is None for v in vals)
                         else (" / ".join("n/a" if v is None else f"{v:.2f}x" for v in vals), note))(
              [_latency(b)(r, d)[0] for b in (1, 8, 32)], _latency(1)(r, d)[1]))),
    Claim("latency batch 1, full -> LEAP", "8.46 ms -> 5.25 ms", "ms", _latency_ms),
    Claim("monitoring overhead", 0.222, "fraction", _overhead),
    Claim("beta sweep {0.1,0.2,0.4,0.6,0.8} (50K samples, 2 epochs)", "exit rate > 84%, 1.78-1.95x layer reduction", "", _beta),
    Claim("BEIR NDCG@10, LEAP full vs baseline full, mean over 5 tasks", 3.3, "%", _beir_delta(10), tol=1.0, direction=lambda m, r: m > -1.0),
    Claim("BEIR NDCG@5 / NDCG@1 / NDCG@3 aggregate", "+3.1% / +1.8% / +0.2%", "%",
          lambda r, d: ((lambda vals: (None, "BEIR not run") if vals[0] is None else (" / ".join(f"{v:+.1f}%" for v in vals), "mean relative change"))(
              [_beir_delta(k)(r, d)[0] for k in (5, 1, 3)]))),
    Claim("ArguAna NDCG@10, early exit vs LEAP full", -24.7, "%", _beir_ee("arguana"), tol=4.0),
    Claim("NFCorpus and FiQA, early exit vs full", "about unchanged", "%",
          lambda r, d: ((lambda a, b: (None, "NFCorpus/FiQA not evaluated in this config") if a[0] is None and b[0] is None
                         else (f"{a[0] if a[0] is None else round(a[0], 1)} / {b[0] if b[0] is None else round(b[0], 1)}", "NFCorpus / FiQA"))(
              _beir_ee("nfcorpus")(r, d), _beir_ee("fiqa")(r, d)))),
    Claim("BEIR documents exiting at layer 6", 99.9, "%", _beir_docs, tol=1.0),
]


def _verdict(c: Claim, measured: Any, res: dict) -> str:
    if measured is None:
        return "not measured"
    if isinstance(measured, (int, float)) and isinstance(c.paper, (int, float)):
        if c.tol is not None and abs(measured - c.paper) <= c.tol:
            return "within tolerance"
        if c.direction is not None:
            try:
                return "direction holds" if c.direction(measured, res) else "differs"
            except Exception:  # a comparison run is missing
                return "differs"
        return "differs"
    return "see note"


def _measure(c: Claim, res: dict, diag: dict) -> tuple[Any, str]:
    try:
        return c.measure(res, diag)
    except (KeyError, IndexError, TypeError, ZeroDivisionError) as err:
        return None, f"could not compute ({type(err).__name__}: {err})"


def build_claims(eval_paths: Iterable[str | os.PathLike], diagnostics: dict[str, str | os.PathLike] | None = None) -> pd.DataFrame:
    """One row per SPEC claim, measured on ``leap`` (the paper's objective). Each extra exit
    objective in the results (e.g. ``leap_fix``) gets ``measured (<v>)`` / ``verdict (<v>)``
    columns: the same claims with ``<v>`` in LEAP's place (left empty where the claim does
    not read LEAP, i.e. where the value equals ``leap``'s)."""
    res = collect(eval_paths)
    diag = {k: _load(p) for k, p in (diagnostics or {}).items()}
    extras = [v for v in extra_variants(res) if _runs(res, v, "stsb")]
    rows = []
    for c in CLAIMS:
        measured, note = _measure(c, res, diag)
        row = {"claim": c.claim, "paper": c.paper, "measured": measured, "unit": c.unit,
               "verdict": _verdict(c, measured, res), "note": note}
        for v in extras:
            swapped = {**res, "leap": res[v]}
            m, _ = _measure(c, swapped, diag)
            same = m == measured
            row[f"measured ({v})"] = None if same else m
            row[f"verdict ({v})"] = None if same else _verdict(c, m, swapped)
        rows.append(row)
    return pd.DataFrame(rows)


def write_report(
    out_md: str | os.PathLike,
    claims: pd.DataFrame,
    tables_dir: str | os.PathLike,
    figures_dir: str | os.PathLike,
    synthetic: bool,
    experiment: str,
) -> None:
    """Markdown report: claims, every written table, every figure. On synthetic data its
    first lines say that the numbers are not comparable to the paper."""
    out = Path(out_md)
    lines = [f"# LEAP reproduction report: {experiment}", ""]
    if synthetic:
        lines += ["> **Synthetic data.** This run used the built-in demo data (templates and word lists written for "
                  "the project) and small models. Its numbers test that the pipeline works; they are **not comparable "
                  "to the paper**.", ""]
    lines += ["## Claims versus measured", "", _md(claims), ""]
    tdir, fdir = Path(tables_dir), Path(figures_dir)
    lines += ["## Tables", ""]
    for md in sorted(tdir.glob("table*.md"), key=lambda p: int("".join(ch for ch in p.stem.split("_")[0] if ch.isdigit()))):
        lines += [f"### {md.stem}", "", md.read_text(encoding="utf-8"), ""]
    idx = tdir / "index.json"
    if idx.exists():
        import json

        skipped = {k: v for k, v in json.loads(idx.read_text()).items() if v != "written"}
        if skipped:
            lines += ["Skipped tables: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()), ""]
    lines += ["## Figures", ""]
    for png in sorted(fdir.glob("fig*.png")):
        lines += [f"![{png.stem}]({os.path.relpath(png, out.parent)})", ""]
    write_text(out, "\n".join(lines) + "\n")


def _md(df: pd.DataFrame) -> str:
    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cols = list(df.columns)
    rows = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    rows += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(rows)


def run_report(eval_paths: Iterable[str], diagnostics: dict[str, str], tables_index: str, figures_index: str,
               stats_json: str, claims_csv: str, report_md: str, experiment: str) -> pd.DataFrame:
    """claims.csv and report.md (the workflow's report rule)."""
    from leap.files import atomic_path

    claims = build_claims(eval_paths, diagnostics)
    with atomic_path(claims_csv, suffix=".csv") as tmp:
        claims.to_csv(tmp, index=False)
    synthetic = bool(_load(stats_json).get("synthetic", False))
    write_report(report_md, claims, Path(tables_index).parent, Path(figures_index).parent, synthetic, experiment)
    return claims
