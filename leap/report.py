"""Claims versus measured (``claims.csv``) and the Markdown report.

Every row of SPEC's claims table gets ``claim, paper, measured, unit, verdict`` (SPEC's
columns), then ``reason``, ``variant`` (the exit objective a LEAP claim was measured on)
and ``source`` (sentence set, layers, device). The verdict vocabulary:

* ``reproduced``: every measured value lies within the claim's tolerance of the paper's;
* ``direction holds``: the numbers differ, but the qualitative statement the paper makes
  with them holds, compared on the same quantity (the reason says which);
* ``differs``: measured, and neither;
* ``not comparable``: what was measured is not the quantity the paper reports (another
  device or precision, one benchmark of five); the value is shown, not judged;
* ``not measured``: the configuration has no run for it (the reason says what is missing).

An exit-based claim cannot be ``reproduced`` or ``direction holds`` when (almost) nothing
exits: below :data:`MIN_EXIT_RATE` of inputs leaving early, a score is a full-depth score.
Claims about LEAP are repeated for every extra exit objective of the run (``variant``).

Paper layers (of 12) map to a student of ``L`` layers by relative depth,
``l * L / 12`` (:func:`paper_layer_to_student`), interpolating linearly between
neighbouring student layers when that depth falls between two, so that two paper layers
never read the same student number.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leap.files import atomic_path, write_text
from leap.results import beir_runs, collect, extra_variants, load_json, mean, runs, split_of, table_order

PAPER_LAYERS = 12
MIN_EXIT_RATE = 0.05
"""Below this fraction of inputs exiting early, an exit claim is judged as not exiting."""
BEIR_PAPER_SETS = 5

VERDICTS = ("reproduced", "direction holds", "differs", "not comparable", "not measured")


def paper_layer_to_student(paper_layer: int, n_layers: int) -> float:
    """The student depth (may be fractional) at the same relative depth as a paper layer of 12."""
    return min(max(paper_layer * n_layers / PAPER_LAYERS, 1.0), float(n_layers))


def at_depth(values: Sequence[float | None], depth: float) -> float | None:
    """A per-layer list (index ``l - 1``) read at a fractional depth, linear between layers."""
    lo = int(np.floor(depth))
    hi = int(np.ceil(depth))
    a, b = values[lo - 1], values[hi - 1]
    if a is None or b is None:
        return None
    return float(a + (b - a) * (depth - lo)) if hi != lo else float(a)


@dataclass
class Measured:
    """What a claim's measurement found.

    Attributes:
        values: the measured numbers, in the order of the paper's (``None``: not measured).
        text: how to print them.
        note: where they come from (sentence set, layers, device).
        exit_rate: the fraction of inputs exiting early behind an exit-based claim.
        not_comparable: why the quantity is not the paper's (``""`` when it is).
    """

    values: tuple[float, ...] | None
    text: str = ""
    note: str = ""
    exit_rate: float | None = None
    not_comparable: str = ""


@dataclass(frozen=True)
class Claim:
    """One row of SPEC's claims table.

    ``paper``: the paper's numbers (a tuple, in the claim's order) and ``display`` its text;
    ``tol``: the tolerance of each number for ``reproduced``; ``direction``: the qualitative
    statement, ``(measured, results) -> (holds, reason)``; ``exit_based``: the claim needs
    exits; ``per_variant``: it is about LEAP and is repeated for each extra exit objective.
    """

    claim: str
    display: str
    paper: tuple[float, ...]
    unit: str
    measure: Callable[[dict, dict, str], Measured]
    tol: tuple[float, ...] | None = None
    direction: Callable[[Measured, dict, str], tuple[bool, str]] | None = None
    exit_based: bool = False
    per_variant: bool = False
    tags: tuple[str, ...] = field(default=())


def _fmt(vals: Sequence[float], pattern: str = "{:.3f}", sep: str = " / ") -> str:
    return sep.join(pattern.format(v) for v in vals)


# -- measurements -------------------------------------------------------------------------------------
def _stsb(res: dict, v: str, key: str = "spearman_exit") -> list[float]:
    return [split_of(r)[key] for r in runs(res, v, "stsb")]


def _exit_rate(res: dict, v: str) -> float | None:
    return mean([split_of(r)["exit_rate"] for r in runs(res, v, "stsb")])


def m_stsb_exit(res: dict, diag: dict, v: str) -> Measured:
    xs = _stsb(res, v)
    if not xs:
        return Measured(None, note=f"variant {v} not run")
    return Measured((mean(xs),), f"{mean(xs):.3f}", f"{len(xs)} seed(s), STS-B test", exit_rate=_exit_rate(res, v))


def m_stsb_full(variant: str) -> Callable[[dict, dict, str], Measured]:
    def f(res: dict, diag: dict, v: str) -> Measured:
        xs = _stsb(res, variant, "spearman_full")
        if not xs:
            return Measured(None, note=f"variant {variant} not run")
        note = f"{len(xs)} seed(s), STS-B test, full depth"
        if variant == "fixed_depth":
            L = len(split_of(runs(res, variant, "stsb")[0])["exit_distribution"])
            note += f"; a {L}-layer student (the paper's is 7 of 12 layers)"
        return Measured((mean(xs),), f"{mean(xs):.3f}", note)

    return f


def m_deebert(res: dict, diag: dict, v: str) -> Measured:
    heads = runs(res, "deebert", "stsb_heads")
    if not heads:
        return Measured(None, note="deebert not run")
    t = [h["test"] for h in heads]
    s, rate = mean([x["spearman_exit"] for x in t]), mean([x["exit_rate"] for x in t])
    return Measured(
        (s,),
        f"{s:.3f}",
        f"baseline student, per-pair exit, {100 * rate:.1f}% of sentences exit "
        f"(E[l] {mean([x['expected_exit_layer'] for x in t]):.2f})",
        exit_rate=rate,
    )


def m_cumulative(res: dict, diag: dict, v: str) -> Measured:
    rs = [split_of(r) for r in runs(res, v, "stsb")]
    if not rs:
        return Measured(None, note=f"{v} not run")
    L = len(rs[0]["exit_distribution"])
    d6, d7 = paper_layer_to_student(6, L), paper_layer_to_student(7, L)
    cum = [mean([at_depth(r["cumulative_exit"], d) for r in rs]) for d in (d6, d7)]
    return Measured(
        tuple(cum),
        _fmt([100 * c for c in cum], "{:.1f}%"),
        f"paper L6, L7 of 12 -> depth {d6:g}, {d7:g} of {L}",
        exit_rate=_exit_rate(res, v),
    )


def m_expected_layer(res: dict, diag: dict, v: str) -> Measured:
    rs = [split_of(r) for r in runs(res, v, "stsb")]
    if not rs:
        return Measured(None, note=f"{v} not run")
    L = len(rs[0]["exit_distribution"])
    el, red = mean([r["expected_exit_layer"] for r in rs]), mean([r["layer_reduction"] for r in rs])
    return Measured(
        (el * PAPER_LAYERS / L, red),
        f"{el:.2f} of {L} (= {el * PAPER_LAYERS / L:.2f} of 12) / {red:.2f}x",
        f"student of {L} layers; E[l] compared at relative depth",
        exit_rate=_exit_rate(res, v),
    )


def m_rate(variant: str) -> Callable[[dict, dict, str], Measured]:
    def f(res: dict, diag: dict, v: str) -> Measured:
        r = _exit_rate(res, variant)
        if r is None:
            return Measured(None, note=f"{variant} not run")
        return Measured((r,), f"{100 * r:.1f}%", "STS-B test sentences, the config's exit rule")

    return f


def m_layers(key: str, layers: Sequence[int], source: str = "layers") -> Callable[[dict, dict, str], Measured]:
    def f(res: dict, diag: dict, v: str) -> Measured:
        rs = runs(res, v, source)
        if not rs:
            return Measured(None, note=f"no layers.json for {v}")
        L = rs[0]["num_layers"]
        depths = [paper_layer_to_student(l, L) for l in layers]
        vals = [mean([at_depth(r[key], d) for r in rs]) for d in depths]
        if any(x is None for x in vals):
            return Measured(None, note=f"{key} undefined at these depths")
        notes = ", ".join(f"L{l}->{d:g}" for l, d in zip(layers, depths))
        return Measured(tuple(vals), _fmt(vals), f"paper layers of 12 -> depth of {L}: {notes}")

    return f


def m_stability(res: dict, diag: dict, v: str) -> Measured:
    rs = runs(res, v, "layers")
    if not rs:
        return Measured(None, note=f"{v} not run")
    vals = (
        mean([x["stability_mean"] for x in rs]),
        mean([x["stability"][1] for x in rs]),
        mean([x["stability"][-1] for x in rs]),
    )
    return Measured(vals, _fmt(vals, sep="; "), f"average; L2; the last layer of {rs[0]['num_layers']}")


def m_contraction(res: dict, diag: dict, v: str) -> Measured:
    rs = runs(res, v, "layers")
    if not rs:
        return Measured(None, note=f"{v} not run")
    m = mean([x["median_contraction"] for x in rs])
    return Measured((m,), f"{m:.3f}", "median over layers of the per-layer median ratio")


def _diag_value(diag: dict, part: str, key: str) -> Any:
    for name, d in diag.items():
        if part.lower() in name.lower():
            return d[key]
    return None


def m_published_rates(res: dict, diag: dict, v: str) -> Measured:
    vals = [_diag_value(diag, n, "exit_rate") for n in ("tinybert", "minilm-l6", "distilbert")]
    if all(x is None for x in vals):
        return Measured(None, note="none of these checkpoints is in this config")
    text = " / ".join("n/a" if x is None else f"{100 * x:.1f}%" for x in vals)
    missing = [n for n, x in zip(("TinyBERT", "MiniLM-L6", "DistilBERT"), vals) if x is None]
    return Measured(
        None if missing else tuple(vals),
        text,
        "published checkpoints, built-in sentences" + (f"; not in config: {', '.join(missing)}" if missing else ""),
        not_comparable=f"only part of the checkpoints ran ({', '.join(missing)} missing)" if missing else "",
    )


def m_minilm12(res: dict, diag: dict, v: str) -> Measured:
    for name, d in diag.items():
        if "l12" in name.lower():
            return Measured(
                (d["similarity_to_final"][6],), f"{d['similarity_to_final'][6]:.3f}", f"published {name}, L7"
            )
    return Measured(None, note="all-MiniLM-L12-v2 not in this config (hub only)")


def _latency_rows(res: dict, v: str, batch: int) -> list[dict]:
    return [r for l in runs(res, v, "latency") for r in l["rows"] if r["batch_size"] == batch]


def _device_note(res: dict, v: str) -> tuple[str, str]:
    lat = runs(res, v, "latency")
    dev, dtype = lat[0].get("device"), lat[0].get("dtype")
    name = lat[0].get("device_name") or dev
    other = (
        ""
        if dev == "cuda" and dtype == "float16"
        else f"timed on {name} ({dev}, {dtype}); the paper's is an L4 GPU in fp16"
    )
    return f"{name}, {dtype}", other


def m_speedup(res: dict, diag: dict, v: str) -> Measured:
    if not runs(res, v, "latency"):
        return Measured(None, note=f"no latency run for {v}")
    vals = [mean([r["speedup"] for r in _latency_rows(res, v, b)]) for b in (1, 8, 32)]
    note, other = _device_note(res, v)
    rate = mean([r["exit_rate"] for r in (split_of(x) for x in runs(res, v, "stsb"))]) if runs(res, v, "stsb") else None
    return Measured(
        None if any(x is None for x in vals) else tuple(vals),
        " / ".join("n/a" if x is None else f"{x:.2f}x" for x in vals),
        note,
        exit_rate=rate,
        not_comparable=other,
    )


def m_latency_ms(res: dict, diag: dict, v: str) -> Measured:
    rows = _latency_rows(res, v, 1)
    if not rows:
        return Measured(None, note=f"no latency run for {v}")
    full, ex = mean([r["full_ms"] for r in rows]), mean([r["exit_ms"] for r in rows])
    note, other = _device_note(res, v)
    return Measured((full, ex), f"{full:.2f} -> {ex:.2f} ms", note, exit_rate=_exit_rate(res, v), not_comparable=other)


def m_overhead(res: dict, diag: dict, v: str) -> Measured:
    rows = _latency_rows(res, v, 1)
    if not rows:
        return Measured(None, note=f"no latency run for {v}")
    o = mean([r["monitoring_overhead"] for r in rows])
    note, other = _device_note(res, v)
    return Measured((o,), f"{100 * o:.1f}%", f"batch 1, {note}", not_comparable=other)


def m_beta(res: dict, diag: dict, v: str) -> Measured:
    vs = sorted(x for x in res if x.startswith("beta"))
    rs = [split_of(r) for x in vs for r in runs(res, x, "stsb")]
    if not rs:
        return Measured(None, note="beta sweep not run")
    rates, red = [r["exit_rate"] for r in rs], [r["layer_reduction"] for r in rs]
    return Measured(
        (min(rates), min(red), max(red)),
        f"exit {100 * min(rates):.1f}-{100 * max(rates):.1f}%, {min(red):.2f}-{max(red):.2f}x",
        f"betas {', '.join(x[4:] for x in vs)} (reduced training)",
        exit_rate=max(rates),
    )


def _beir_delta(res: dict, v: str, k: int) -> tuple[float | None, list[str]]:
    base, other = beir_runs(res, "baseline"), beir_runs(res, v)
    ds = sorted(set(base) & set(other))
    if not ds:
        return None, []
    deltas = []
    for d in ds:
        b = mean([x["full"][f"NDCG@{k}"] for x in base[d]])
        l = mean([x["full"][f"NDCG@{k}"] for x in other[d]])
        deltas.append(100 * (l - b) / b if b else 0.0)
    return float(np.mean(deltas)), ds


def m_beir_delta(ks: Sequence[int]) -> Callable[[dict, dict, str], Measured]:
    def f(res: dict, diag: dict, v: str) -> Measured:
        vals = [_beir_delta(res, v, k) for k in ks]
        if vals[0][0] is None:
            return Measured(None, note=f"BEIR not run for baseline and {v}")
        ds = vals[0][1]
        nums = tuple(x for x, _ in vals)
        short = (
            f"{len(ds)} of the paper's {BEIR_PAPER_SETS} sets ({', '.join(ds)})" if len(ds) < BEIR_PAPER_SETS else ""
        )
        return Measured(
            nums, _fmt(nums, "{:+.1f}%"), f"mean relative change over {', '.join(ds)}", not_comparable=short
        )

    return f


def _beir_ee(res: dict, v: str, name: str) -> tuple[float | None, float | None]:
    rs = beir_runs(res, v).get(name)
    if not rs:
        return None, None
    lf, le = mean([x["full"]["NDCG@10"] for x in rs]), mean([x["exit"]["NDCG@10"] for x in rs])
    return (100 * (le - lf) / lf if lf else None), mean([x["exit"]["corpus_exit"]["exit_rate"] for x in rs])


def m_beir_ee(name: str) -> Callable[[dict, dict, str], Measured]:
    def f(res: dict, diag: dict, v: str) -> Measured:
        d, rate = _beir_ee(res, v, name)
        if d is None:
            return Measured(None, note=f"{name} not evaluated in this config")
        return Measured((d,), f"{d:+.1f}%", f"{name} NDCG@10, early exit vs full", exit_rate=rate)

    return f


def m_beir_unchanged(res: dict, diag: dict, v: str) -> Measured:
    """NFCorpus and FiQA, early exit vs full: whichever of the two the config evaluates."""
    got = {name: _beir_ee(res, v, name.lower()) for name in ("NFCorpus", "FiQA")}
    have = {name: d for name, d in got.items() if d[0] is not None}
    if not have:
        return Measured(None, note="neither NFCorpus nor FiQA is evaluated in this config")
    vals = tuple(d for d, _ in have.values())
    missing = [name for name in got if name not in have]
    note = " / ".join(have) + (f" ({', '.join(missing)} not evaluated in this config)" if missing else "")
    return Measured(vals, _fmt(vals, "{:+.1f}%"), note, exit_rate=min(r for _, r in have.values()))


def m_beir_docs(res: dict, diag: dict, v: str) -> Measured:
    vals = []
    L = None
    for _, rs in beir_runs(res, v).items():
        for x in rs:
            ce = x["exit"]["corpus_exit"]
            L = len(ce["cumulative_exit"])
            vals.append(at_depth(ce["cumulative_exit"], paper_layer_to_student(6, L)))
    if not vals:
        return Measured(None, note=f"BEIR not run for {v}")
    m = 100 * mean(vals)
    return Measured(
        (m,),
        f"{m:.1f}%",
        f"documents exited by paper L6 -> depth {paper_layer_to_student(6, L):g} of {L}",
        exit_rate=m / 100,
    )


def _not(reason: str) -> Callable[[dict, dict, str], Measured]:
    return lambda res, diag, v: Measured(None, note=reason)


# -- directions (the paper's qualitative statements, on the same quantity) ---------------------------
def d_exit_small_cost(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    base = mean(_stsb(res, "baseline", "spearman_full"))
    if base is None:
        return False, "no baseline to compare with"
    gap = base - m.values[0]
    ok = gap <= 0.05 and (m.exit_rate or 0) >= 0.5
    return ok, (
        f"exited {m.values[0]:.3f} vs baseline full {base:.3f} (gap {gap:+.3f}, paper 0.017) with "
        f"{100 * (m.exit_rate or 0):.1f}% exiting (paper 91.9% by L7); holds if the gap <= 0.05 and >= 50% exit"
    )


def d_heads_fail(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    # only objectives that exit: a variant with (almost) no exits scores at full depth
    exiting = {
        x: mean(_stsb(res, x))
        for x in ("leap", *extra_variants(res))
        if _stsb(res, x) and (_exit_rate(res, x) or 0) >= MIN_EXIT_RATE
    }
    if not exiting:
        return False, f"no exit objective with >= {100 * MIN_EXIT_RATE:.0f}% of inputs exiting to compare with"
    name, best = max(exiting.items(), key=lambda kv: kv[1])
    ok = m.values[0] < best - 0.05
    return ok, (
        f"heads {m.values[0]:.3f} vs best convergence exit {best:.3f} ({name}, >= {100 * MIN_EXIT_RATE:.0f}% "
        "exiting); holds if heads are > 0.05 worse"
    )


def d_below(th: float) -> Callable[[Measured, dict, str], tuple[bool, str]]:
    return lambda m, res, v: (m.values[0] < th, f"{m.values[0]:.3f}; holds if below {th}")


def d_exits_most(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    last = m.values[-1]
    return last >= 0.5, f"{100 * last:.1f}% exited by the depth of paper L7; holds if >= 50%"


def d_fewer_layers(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    red = m.values[1]
    return red >= 1.4, f"{red:.2f}x fewer layers; holds if >= 1.4x"


def d_faster(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    return m.values[0] > 1.0, f"batch-1 speedup {m.values[0]:.2f}x; holds if above 1"


def d_rises(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    vals = m.values
    ok = all(b >= a - 1e-9 for a, b in zip(vals, vals[1:]))
    return ok, "holds if the values rise with depth"


def d_falls(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    vals = m.values
    ok = all(b <= a + 1e-9 for a, b in zip(vals, vals[1:]))
    return ok, "holds if the failure rate falls with depth"


def d_contracts(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    return m.values[0] < 1.0, f"{m.values[0]:.3f}; holds if below 1 (contraction)"


def d_beta(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    return m.values[0] >= 0.5, f"lowest exit rate {100 * m.values[0]:.1f}%; holds if every beta exits >= 50%"


def d_ee_drop(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    return m.values[0] < -5.0, f"{m.values[0]:+.1f}%; holds if early exit loses more than 5%"


def d_unchanged(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    ok = all(abs(x) <= 2.0 for x in m.values)
    return ok, f"holds if each measured set ({m.note}) is within 2% of full depth"


def d_beir_gain(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    return m.values[0] > 1.0, f"{m.values[0]:+.1f}%; holds if LEAP full beats the baseline by more than 1%"


CLAIMS: list[Claim] = [
    Claim(
        "STS-B, LEAP early exit, theta 0.95, 3 seeds",
        "0.760 +/- 0.006",
        (0.760,),
        "Spearman",
        m_stsb_exit,
        tol=(0.006,),
        direction=d_exit_small_cost,
        exit_based=True,
        per_variant=True,
    ),
    Claim(
        "STS-B, baseline (no L_exit), 3-seed mean", "0.777", (0.777,), "Spearman", m_stsb_full("baseline"), tol=(0.01,)
    ),
    Claim(
        "STS-B, fixed 7-layer distilled model", "0.792", (0.792,), "Spearman", m_stsb_full("fixed_depth"), tol=(0.01,)
    ),
    Claim(
        "STS-B, DeeBERT-style learned exit heads",
        "0.26",
        (0.26,),
        "Spearman",
        m_deebert,
        tol=(0.05,),
        direction=d_heads_fail,
        exit_based=True,
    ),
    Claim(
        "STS-B, sentence-transformers/all-MiniLM-L12-v2",
        "0.831",
        (0.831,),
        "Spearman",
        _not("all-MiniLM-L12-v2 is a hub checkpoint; not in this config"),
    ),
    Claim(
        "cumulative exit by L6 / L7 (LEAP, theta 0.95)",
        "38.9% / 91.9%",
        (0.389, 0.919),
        "fraction",
        m_cumulative,
        tol=(0.05, 0.05),
        direction=d_exits_most,
        exit_based=True,
        per_variant=True,
    ),
    Claim(
        "expected exit layer / layer reduction",
        "6.7 / 1.80x",
        (6.7, 1.80),
        "layer of 12 / x",
        m_expected_layer,
        tol=(0.3, 0.1),
        direction=d_fewer_layers,
        exit_based=True,
        per_variant=True,
    ),
    Claim("baseline exit rate", "0%", (0.0,), "fraction", m_rate("baseline"), tol=(0.01,)),
    Claim(
        "similarity to final, LEAP: L1, L5, L6, L7",
        "0.769, 0.919, 0.945, 0.963",
        (0.769, 0.919, 0.945, 0.963),
        "cosine",
        m_layers("similarity_to_final", (1, 5, 6, 7)),
        tol=(0.03,) * 4,
        direction=d_rises,
        per_variant=True,
    ),
    Claim(
        "similarity to final, baseline: L6",
        "0.162",
        (0.162,),
        "cosine",
        lambda r, d, v: m_layers("similarity_to_final", (6,))(r, d, "baseline"),
        tol=(0.05,),
        direction=d_below(0.7),
    ),
    Claim("similarity to final at L7, all-MiniLM-L12-v2", "0.29", (0.29,), "cosine", m_minilm12, tol=(0.05,)),
    Claim(
        "NN@10, LEAP: L6, L7, L8",
        "0.79, 0.84, 0.86",
        (0.79, 0.84, 0.86),
        "overlap",
        m_layers("nn_at_10", (6, 7, 8)),
        tol=(0.03,) * 3,
        direction=d_rises,
        per_variant=True,
    ),
    Claim(
        "NN@10 failure rate: L4, L7, L8",
        "41.8%, 0.6%, 0.2%",
        (0.418, 0.006, 0.002),
        "fraction",
        m_layers("nn_failure_rate", (4, 7, 8)),
        tol=(0.05, 0.01, 0.01),
        direction=d_falls,
        per_variant=True,
    ),
    Claim(
        "inter-layer stability, LEAP: average; L2; L12",
        "0.981; 0.931; 0.994",
        (0.981, 0.931, 0.994),
        "cosine",
        m_stability,
        tol=(0.01, 0.02, 0.01),
        per_variant=True,
    ),
    Claim(
        "median contraction ratio, LEAP",
        "0.911",
        (0.911,),
        "ratio",
        m_contraction,
        tol=(0.05,),
        direction=d_contracts,
        per_variant=True,
    ),
    Claim(
        "exit rate: TinyBERT / MiniLM-L6 / DistilBERT",
        "0% / 0.7% / 71.5%",
        (0.0, 0.007, 0.715),
        "fraction",
        m_published_rates,
        tol=(0.01, 0.01, 0.05),
    ),
    Claim(
        "wall-clock speedup batch 1 / 8 / 32 (L4, fp16)",
        "1.61x / 1.32x / 1.24x",
        (1.61, 1.32, 1.24),
        "x",
        m_speedup,
        tol=(0.1, 0.1, 0.1),
        direction=d_faster,
        exit_based=True,
        per_variant=True,
    ),
    Claim(
        "latency batch 1, full -> LEAP",
        "8.46 ms -> 5.25 ms",
        (8.46, 5.25),
        "ms",
        m_latency_ms,
        tol=(0.5, 0.5),
        exit_based=True,
        per_variant=True,
    ),
    Claim("monitoring overhead", "22.2%", (0.222,), "fraction", m_overhead, tol=(0.03,), per_variant=True),
    Claim(
        "beta sweep {0.1,0.2,0.4,0.6,0.8} (50K samples, 2 epochs)",
        "exit rate > 84%, 1.78-1.95x layer reduction",
        (0.84, 1.78, 1.95),
        "fraction / x",
        m_beta,
        tol=(0.05, 0.1, 0.1),
        direction=d_beta,
        exit_based=True,
    ),
    Claim(
        "BEIR NDCG@10, LEAP full vs baseline full, mean over 5 tasks",
        "+3.3%",
        (3.3,),
        "%",
        m_beir_delta((10,)),
        tol=(1.0,),
        direction=d_beir_gain,
        per_variant=True,
    ),
    Claim(
        "BEIR NDCG@5 / NDCG@1 / NDCG@3 aggregate",
        "+3.1% / +1.8% / +0.2%",
        (3.1, 1.8, 0.2),
        "%",
        m_beir_delta((5, 1, 3)),
        tol=(1.0, 1.0, 1.0),
        per_variant=True,
    ),
    Claim(
        "ArguAna NDCG@10, early exit vs LEAP full",
        "-24.7%",
        (-24.7,),
        "%",
        m_beir_ee("arguana"),
        tol=(4.0,),
        direction=d_ee_drop,
        exit_based=True,
        per_variant=True,
    ),
    Claim(
        "NFCorpus and FiQA, early exit vs full",
        "about unchanged",
        (0.0, 0.0),
        "%",
        m_beir_unchanged,
        tol=(2.0, 2.0),
        direction=d_unchanged,
        exit_based=True,
        per_variant=True,
    ),
    Claim(
        "BEIR documents exiting at layer 6",
        "99.9%",
        (99.9,),
        "%",
        m_beir_docs,
        tol=(1.0,),
        exit_based=True,
        per_variant=True,
    ),
]


def verdict(c: Claim, m: Measured, res: dict, variant: str) -> tuple[str, str]:
    """``(verdict, reason)`` of one claim for one variant (see the module docstring)."""
    if m.values is None:
        if m.not_comparable:
            return "not comparable", m.not_comparable
        return "not measured", m.note or "no run"
    if m.not_comparable:
        return "not comparable", m.not_comparable
    if c.exit_based and m.exit_rate is not None and m.exit_rate < MIN_EXIT_RATE:
        return "differs", (
            f"only {100 * m.exit_rate:.2f}% of inputs exit early (< {100 * MIN_EXIT_RATE:.0f}%): "
            "the score is a full-depth score, not an exit result"
        )
    far = [abs(x - p) for x, p in zip(m.values, c.paper)]
    if c.tol is not None and len(m.values) == len(c.paper) and all(f <= t for f, t in zip(far, c.tol)):
        return "reproduced", "every value within tolerance (" + ", ".join(f"+/-{t:g}" for t in c.tol) + ")"
    if c.direction is not None:
        try:
            holds, why = c.direction(m, res, variant)
        except (KeyError, IndexError, TypeError, ZeroDivisionError) as err:
            return "differs", f"the comparison could not be made ({type(err).__name__})"
        if holds:
            return "direction holds", why
        return "differs", why
    return "differs", "outside tolerance: " + ", ".join(f"{x:.3g} vs {p:.3g}" for x, p in zip(m.values, c.paper))


def _measure(c: Claim, res: dict, diag: dict, v: str) -> Measured:
    try:
        return c.measure(res, diag, v)
    except (KeyError, IndexError, TypeError, ZeroDivisionError) as err:
        return Measured(None, note=f"could not compute ({type(err).__name__}: {err})")


def build_claims(
    eval_paths: Iterable[str | os.PathLike], diagnostics: dict[str, str | os.PathLike] | None = None
) -> pd.DataFrame:
    """One row per SPEC claim for ``leap`` (the paper's objective) and, for the claims about
    LEAP, one per extra exit objective of the run."""
    res = collect(eval_paths)
    diag = {k: load_json(p) for k, p in (diagnostics or {}).items()}
    extras = [v for v in extra_variants(res) if runs(res, v, "stsb")]
    rows = []
    for c in CLAIMS:
        for v in ("leap", *extras) if c.per_variant else ("leap",):
            m = _measure(c, res, diag, v)
            verdict_, reason = verdict(c, m, res, v)
            rows.append(
                {
                    "claim": c.claim,
                    "paper": c.display,
                    "measured": m.text,
                    "unit": c.unit,
                    "verdict": verdict_,
                    "reason": reason,
                    "variant": v if c.per_variant else "",
                    "source": m.note,
                }
            )
    return pd.DataFrame(rows)


def write_report(
    out_md: str | os.PathLike,
    claims: pd.DataFrame,
    tables_dir: str | os.PathLike,
    figures_dir: str | os.PathLike,
    synthetic: bool,
    experiment: str,
    provenance: dict | None = None,
) -> None:
    """Markdown report: the frontier first, then claims, every written table, every figure,
    and the run's provenance (:mod:`leap.provenance`). On synthetic data its first lines say
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
    if provenance is not None:
        from leap.provenance import provenance_markdown

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
) -> pd.DataFrame:
    """claims.csv and report.md (the workflow's report rule)."""
    claims = build_claims(eval_paths, diagnostics)
    with atomic_path(claims_csv, suffix=".csv") as tmp:
        claims.to_csv(tmp, index=False)
    synthetic = bool(load_json(stats_json).get("synthetic", False))
    prov = load_json(provenance_json) if provenance_json else None
    write_report(report_md, claims, Path(tables_index).parent, Path(figures_index).parent, synthetic, experiment, prov)
    return claims
