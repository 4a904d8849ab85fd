"""The measurements and directions the paper's claims are checked with (:mod:`leap.workflow.claims`).

A *measurement* reads the evaluation results (:data:`leap.workflow.results.Results`) and the
published checkpoints' diagnostics, and returns a :class:`Measured` for one variant:
``(results, diagnostics, variant, **args) -> Measured``. A *direction* checks the paper's
qualitative statement on the same quantity: ``(measured, results, variant, **args) ->
(holds, reason)``. Both are registered by name (:data:`MEASUREMENTS`, :data:`DIRECTIONS`);
``leap/workflow/resources/claims.yaml`` names them, with their arguments, for each claim.

Paper layers (of 12) map to a student of ``L`` layers by relative depth,
``l * L / 12`` (:func:`paper_layer_to_student`), interpolating linearly between
neighbouring student layers when that depth falls between two, so that two paper layers
never read the same student number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from leap.workflow.frontier import BAR_REDUCTION
from leap.workflow.records import (
    Diagnostic,
    LatencyRow,
    heads_runs,
    latency_runs,
    layer_runs,
    pair_splits,
    retrieval_runs,
)
from leap.workflow.results import extra_variants, mean

PAPER_LAYERS = 12
MIN_EXIT_RATE = 0.05
"""Below this fraction of inputs exiting early, an exit claim is judged as not exiting."""
BEIR_PAPER_SETS = 5

MeasureFn = Callable[..., "Measured"]
DirectionFn = Callable[..., tuple[bool, str]]
MEASUREMENTS: dict[str, MeasureFn] = {}
"""Every measurement a claim can name: ``name -> (results, diagnostics, variant, **args) -> Measured``."""
DIRECTIONS: dict[str, DirectionFn] = {}
"""Every direction a claim can name: ``name -> (measured, results, variant, **args) -> (holds, reason)``."""


def measurement(name: str) -> Callable[[MeasureFn], MeasureFn]:
    """Register a measurement under ``name`` (the claims file refers to it so)."""

    def register(fn: MeasureFn) -> MeasureFn:
        MEASUREMENTS[name] = fn
        return fn

    return register


def direction(name: str) -> Callable[[DirectionFn], DirectionFn]:
    """Register a direction under ``name``."""

    def register(fn: DirectionFn) -> DirectionFn:
        DIRECTIONS[name] = fn
        return fn

    return register


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


def _fmt(vals: Sequence[float], pattern: str = "{:.3f}", sep: str = " / ") -> str:
    return sep.join(pattern.format(v) for v in vals)


# -- measurements -------------------------------------------------------------------------------------
def _stsb(res: dict, v: str, full: bool = False) -> list[float]:
    return pair_splits(res, v).values(lambda r: r.spearman_full if full else r.spearman_exit)


def _exit_rate(res: dict, v: str) -> float | None:
    return pair_splits(res, v).mean(lambda r: r.exit_rate)


@measurement("stsb_exit")
def m_stsb_exit(res: dict, diag: dict, v: str) -> Measured:
    xs = _stsb(res, v)
    if not xs:
        return Measured(None, note=f"variant {v} not run")
    return Measured((mean(xs),), f"{mean(xs):.3f}", f"{len(xs)} seed(s), STS-B test", exit_rate=_exit_rate(res, v))


@measurement("stsb_full")
def m_stsb_full(res: dict, diag: dict, v: str, variant: str) -> Measured:
    """STS-B test Spearman at full depth of ``variant`` (mean over seeds)."""
    xs = _stsb(res, variant, full=True)
    if not xs:
        return Measured(None, note=f"variant {variant} not run")
    note = f"{len(xs)} seed(s), STS-B test, full depth"
    if variant == "fixed_depth":
        L = len(pair_splits(res, variant).records[0].exit_distribution)
        note += f"; a {L}-layer student (the paper's is 7 of 12 layers)"
    return Measured((mean(xs),), f"{mean(xs):.3f}", note)


@measurement("deebert_heads")
def m_deebert(res: dict, diag: dict, v: str) -> Measured:
    heads = heads_runs(res)
    if not heads:
        return Measured(None, note="deebert not run")
    s, rate = heads.mean(lambda h: h.test.spearman_exit), heads.mean(lambda h: h.test.exit_rate)
    return Measured(
        (s,),
        f"{s:.3f}",
        f"baseline student, per-pair exit, {100 * rate:.1f}% of sentences exit "
        f"(E[l] {heads.mean(lambda h: h.test.expected_exit_layer):.2f})",
        exit_rate=rate,
    )


@measurement("cumulative_exit")
def m_cumulative(res: dict, diag: dict, v: str) -> Measured:
    rs = pair_splits(res, v)
    if not rs:
        return Measured(None, note=f"{v} not run")
    L = len(rs.records[0].exit_distribution)
    d6, d7 = paper_layer_to_student(6, L), paper_layer_to_student(7, L)
    cum = [rs.mean(lambda r, d=d: at_depth(r.cumulative_exit, d)) for d in (d6, d7)]
    return Measured(
        tuple(cum),
        _fmt([100 * c for c in cum], "{:.1f}%"),
        f"paper L6, L7 of 12 -> depth {d6:g}, {d7:g} of {L}",
        exit_rate=_exit_rate(res, v),
    )


@measurement("expected_exit_layer")
def m_expected_layer(res: dict, diag: dict, v: str) -> Measured:
    rs = pair_splits(res, v)
    if not rs:
        return Measured(None, note=f"{v} not run")
    L = len(rs.records[0].exit_distribution)
    el, red = rs.mean(lambda r: r.expected_exit_layer), rs.mean(lambda r: r.layer_reduction)
    return Measured(
        (el * PAPER_LAYERS / L, red),
        f"{el:.2f} of {L} (= {el * PAPER_LAYERS / L:.2f} of 12) / {red:.2f}x",
        f"student of {L} layers; E[l] compared at relative depth",
        exit_rate=_exit_rate(res, v),
    )


@measurement("exit_rate")
def m_rate(res: dict, diag: dict, v: str, variant: str) -> Measured:
    """The exit rate of ``variant`` on STS-B test sentences."""
    r = _exit_rate(res, variant)
    if r is None:
        return Measured(None, note=f"{variant} not run")
    return Measured((r,), f"{100 * r:.1f}%", "STS-B test sentences, the config's exit rule")


@measurement("per_layer")
def m_layers(res: dict, diag: dict, v: str, key: str, layers: Sequence[int], variant: str | None = None) -> Measured:
    """A per-layer analysis ``key`` (layers.json) read at paper ``layers`` (of 12) at the
    same relative depth of the student; ``variant`` overrides the claim's variant."""
    v = variant or v
    rs = layer_runs(res, v)
    if not rs:
        return Measured(None, note=f"no layers.json for {v}")
    L = rs.records[0].num_layers
    depths = [paper_layer_to_student(l, L) for l in layers]
    vals = [rs.mean(lambda r, d=d: at_depth(r.series(key), d)) for d in depths]
    if any(x is None for x in vals):
        return Measured(None, note=f"{key} undefined at these depths")
    notes = ", ".join(f"L{l}->{d:g}" for l, d in zip(layers, depths))
    return Measured(tuple(vals), _fmt(vals), f"paper layers of 12 -> depth of {L}: {notes}")


@measurement("stability")
def m_stability(res: dict, diag: dict, v: str) -> Measured:
    rs = layer_runs(res, v)
    if not rs:
        return Measured(None, note=f"{v} not run")
    vals = (
        rs.mean(lambda x: x.stability_mean),
        rs.mean(lambda x: x.stability[1]),
        rs.mean(lambda x: x.stability[-1]),
    )
    return Measured(vals, _fmt(vals, sep="; "), f"average; L2; the last layer of {rs.records[0].num_layers}")


@measurement("contraction")
def m_contraction(res: dict, diag: dict, v: str) -> Measured:
    rs = layer_runs(res, v)
    if not rs:
        return Measured(None, note=f"{v} not run")
    m = rs.mean(lambda x: x.median_contraction)
    return Measured((m,), f"{m:.3f}", "median over layers of the per-layer median ratio")


def _diag_exit_rate(diag: dict[str, Diagnostic], part: str) -> float | None:
    """The exit rate of the first diagnosed checkpoint whose name contains ``part``."""
    return next((d.exit_rate for name, d in diag.items() if part.lower() in name.lower()), None)


@measurement("published_exit_rates")
def m_published_rates(res: dict, diag: dict, v: str) -> Measured:
    vals = [_diag_exit_rate(diag, n) for n in ("tinybert", "minilm-l6", "distilbert")]
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


@measurement("minilm_l12_similarity")
def m_minilm12(res: dict, diag: dict, v: str) -> Measured:
    for name, d in diag.items():
        if "l12" in name.lower():
            sim = d.similarity_to_final[6]
            return Measured((sim,), f"{sim:.3f}", f"published {name}, L7")
    return Measured(None, note="all-MiniLM-L12-v2 not in this config (hub only)")


def _latency_rows(res: dict, v: str, batch: int) -> list[LatencyRow]:
    return [r for l in latency_runs(res, v).records for r in l.rows if r.batch_size == batch]


def _device_note(res: dict, v: str) -> tuple[str, str]:
    lat = latency_runs(res, v).records[0]
    dev, dtype = lat.device, lat.dtype
    name = lat.device_name or dev
    other = (
        ""
        if dev == "cuda" and dtype == "float16"
        else f"timed on {name} ({dev}, {dtype}); the paper's is an L4 GPU in fp16"
    )
    return f"{name}, {dtype}", other


@measurement("speedup")
def m_speedup(res: dict, diag: dict, v: str) -> Measured:
    if not latency_runs(res, v):
        return Measured(None, note=f"no latency run for {v}")
    vals = [mean([r.speedup for r in _latency_rows(res, v, b)]) for b in (1, 8, 32)]
    note, other = _device_note(res, v)
    rate = _exit_rate(res, v)
    return Measured(
        None if any(x is None for x in vals) else tuple(vals),
        " / ".join("n/a" if x is None else f"{x:.2f}x" for x in vals),
        note,
        exit_rate=rate,
        not_comparable=other,
    )


@measurement("latency_ms")
def m_latency_ms(res: dict, diag: dict, v: str) -> Measured:
    rows = _latency_rows(res, v, 1)
    if not rows:
        return Measured(None, note=f"no latency run for {v}")
    full, ex = mean([r.full_ms for r in rows]), mean([r.exit_ms for r in rows])
    note, other = _device_note(res, v)
    return Measured((full, ex), f"{full:.2f} -> {ex:.2f} ms", note, exit_rate=_exit_rate(res, v), not_comparable=other)


@measurement("monitoring_overhead")
def m_overhead(res: dict, diag: dict, v: str) -> Measured:
    rows = _latency_rows(res, v, 1)
    if not rows:
        return Measured(None, note=f"no latency run for {v}")
    o = mean([r.monitoring_overhead for r in rows])
    note, other = _device_note(res, v)
    return Measured((o,), f"{100 * o:.1f}%", f"batch 1, {note}", not_comparable=other)


@measurement("beta_sweep")
def m_beta(res: dict, diag: dict, v: str) -> Measured:
    vs = sorted(x for x in res if x.startswith("beta"))
    rs = [r for x in vs for r in pair_splits(res, x).records]
    if not rs:
        return Measured(None, note="beta sweep not run")
    rates, red = [r.exit_rate for r in rs], [r.layer_reduction for r in rs]
    return Measured(
        (min(rates), min(red), max(red)),
        f"exit {100 * min(rates):.1f}-{100 * max(rates):.1f}%, {min(red):.2f}-{max(red):.2f}x",
        f"betas {', '.join(x[4:] for x in vs)} (reduced training)",
        exit_rate=max(rates),
    )


def _beir_delta(res: dict, v: str, k: int) -> tuple[float | None, list[str]]:
    base, other = retrieval_runs(res, "baseline"), retrieval_runs(res, v)
    ds = sorted(set(base) & set(other))
    if not ds:
        return None, []
    deltas = []
    for d in ds:
        b = base[d].mean(lambda x: x.ndcg(k))
        l = other[d].mean(lambda x: x.ndcg(k))
        deltas.append(100 * (l - b) / b if b else 0.0)
    return float(np.mean(deltas)), ds


@measurement("beir_vs_baseline")
def m_beir_delta(res: dict, diag: dict, v: str, ks: Sequence[int]) -> Measured:
    """Mean relative change (%) of full-depth NDCG@k against the baseline, for each k of ``ks``."""
    vals = [_beir_delta(res, v, k) for k in ks]
    if vals[0][0] is None:
        missing = [x for x in ("baseline", v) if not retrieval_runs(res, x)]
        why = f"BEIR not run for {' and '.join(missing)}" if missing else f"no BEIR set run for both baseline and {v}"
        return Measured(None, note=why)
    ds = vals[0][1]
    nums = tuple(x for x, _ in vals)
    short = f"{len(ds)} of the paper's {BEIR_PAPER_SETS} sets ({', '.join(ds)})" if len(ds) < BEIR_PAPER_SETS else ""
    return Measured(nums, _fmt(nums, "{:+.1f}%"), f"mean relative change over {', '.join(ds)}", not_comparable=short)


def _beir_ee(res: dict, v: str, name: str) -> tuple[float | None, float | None]:
    rs = retrieval_runs(res, v).get(name)
    if not rs:
        return None, None
    lf, le = rs.mean(lambda x: x.ndcg(10)), rs.mean(lambda x: x.ndcg(10, exited=True))
    return (100 * (le - lf) / lf if lf else None), rs.mean(lambda x: x.exit_rate("corpus"))


@measurement("beir_exit_vs_full")
def m_beir_ee(res: dict, diag: dict, v: str, dataset: str) -> Measured:
    """Relative change (%) of NDCG@10 under early exit against full depth on ``dataset``."""
    d, rate = _beir_ee(res, v, dataset)
    if d is None:
        return Measured(None, note=f"{dataset} not evaluated in this config")
    return Measured((d,), f"{d:+.1f}%", f"{dataset} NDCG@10, early exit vs full", exit_rate=rate)


@measurement("beir_unchanged")
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


@measurement("beir_documents_exiting")
def m_beir_docs(res: dict, diag: dict, v: str) -> Measured:
    vals = []
    L = None
    for _, rs in retrieval_runs(res, v).items():
        for x in rs.records:
            cum = x.cumulative_exit("corpus")
            L = len(cum)
            vals.append(at_depth(cum, paper_layer_to_student(6, L)))
    if not vals:
        return Measured(None, note=f"BEIR not run for {v}")
    m = 100 * mean(vals)
    return Measured(
        (m,),
        f"{m:.1f}%",
        f"documents exited by paper L6 -> depth {paper_layer_to_student(6, L):g} of {L}",
        exit_rate=m / 100,
    )


@measurement("not_in_config")
def m_not_in_config(res: dict, diag: dict, v: str, reason: str) -> Measured:
    """A claim no config of this project can measure (``reason`` says why)."""
    return Measured(None, note=reason)


# -- directions (the paper's qualitative statements, on the same quantity) -------------------------
@direction("exit_small_cost")
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


@direction("heads_fail")
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


@direction("below")
def d_below(m: Measured, res: dict, v: str, threshold: float) -> tuple[bool, str]:
    return m.values[0] < threshold, f"{m.values[0]:.3f}; holds if below {threshold}"


@direction("exits_most")
def d_exits_most(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    last = m.values[-1]
    return last >= 0.5, f"{100 * last:.1f}% exited by the depth of paper L7; holds if >= 50%"


@direction("fewer_layers")
def d_fewer_layers(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    red = m.values[1]
    return red >= BAR_REDUCTION, f"{red:.2f}x fewer layers; holds if >= {BAR_REDUCTION}x"


@direction("faster")
def d_faster(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    return m.values[0] > 1.0, f"batch-1 speedup {m.values[0]:.2f}x; holds if above 1"


@direction("rises")
def d_rises(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    vals = m.values
    ok = all(b >= a - 1e-9 for a, b in zip(vals, vals[1:]))
    return ok, "holds if the values rise with depth"


@direction("falls")
def d_falls(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    vals = m.values
    ok = all(b <= a + 1e-9 for a, b in zip(vals, vals[1:]))
    return ok, "holds if the failure rate falls with depth"


@direction("contracts")
def d_contracts(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    return m.values[0] < 1.0, f"{m.values[0]:.3f}; holds if below 1 (contraction)"


@direction("beta_exits")
def d_beta(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    return m.values[0] >= 0.5, f"lowest exit rate {100 * m.values[0]:.1f}%; holds if every beta exits >= 50%"


@direction("exit_drops")
def d_ee_drop(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    return m.values[0] < -5.0, f"{m.values[0]:+.1f}%; holds if early exit loses more than 5%"


@direction("unchanged")
def d_unchanged(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    ok = all(abs(x) <= 2.0 for x in m.values)
    return ok, f"holds if each measured set ({m.note}) is within 2% of full depth"


@direction("beir_gain")
def d_beir_gain(m: Measured, res: dict, v: str) -> tuple[bool, str]:
    return m.values[0] > 1.0, f"{m.values[0]:+.1f}%; holds if LEAP full beats the baseline by more than 1%"
