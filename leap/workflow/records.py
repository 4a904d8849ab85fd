"""Typed records of a run's evaluations: what the evaluation writes and the tables, claims,
figures and model cards read back, in one place.

Each evaluation JSON has a record type here with ``from_dict`` / ``to_dict`` (a round trip
keeps every key: fields the type does not name travel in ``extra``), so a renamed key breaks
here, once, and a reader asks for ``split.spearman_exit`` instead of ``r["spearman_exit"]``.
:class:`SeedSet` is the "mean over seeds of one value" every table needs: its mean, seed
values and t-interval (:func:`leap.workflow.results.seed_summary`).

* :class:`PairEval` (``stsb.json``, ``qqp.json``): per split a :class:`PairSplit`, whose
  ``frontier`` is a :class:`Frontier` of :class:`Point` s.
* :class:`RetrievalEval` (``beir_<set>.json``).
* :class:`LayerAnalysis` (``layers.json``), :class:`HeadsEval` (``stsb_heads.json``),
  :class:`Diagnostic` (``diagnostic.json``).
* :class:`LatencyRun` (``latency.json``): :class:`LatencyRow` per batch size.

Shapes follow LayerSkip's result dataclasses: plain fields, defaults for what older runs lack.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from leap.errors import LeapError
from leap.workflow.frontier import FrontierPoint
from leap.workflow.results import Results, mean, mean_list, runs, seed_interval, seed_summary, seed_values

R = TypeVar("R")


def _split_known(cls: type, d: dict) -> tuple[dict, dict]:
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    return {k: v for k, v in d.items() if k in names}, {k: v for k, v in d.items() if k not in names}


class Record:
    """``from_dict`` keeps the keys a type does not name in ``extra``; ``to_dict`` puts them back."""

    extra: dict

    @classmethod
    def from_dict(cls, d: dict, strict: bool = False) -> Any:
        """The record of ``d``. ``strict`` (what :func:`write_record` uses): every field without a
        default must be there, else one error naming the missing keys; otherwise missing
        fields read as ``None`` (partial records in tests, older runs)."""
        known, extra = _split_known(cls, d)
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [k for k in required if k not in known]
        if missing and strict:
            raise LeapError(
                f"{cls.__name__} record without {missing} (has {sorted(d)}); the evaluation that wrote it "
                "does not write what the tables read: fix the writer (leap.workflow.evaluate) or the record "
                "(leap.workflow.records)"
            )
        rec = cls(**cls._convert({**dict.fromkeys(missing), **known}, strict), extra=extra)
        rec._keys = tuple(d)  # to_dict writes back what was read, in its order
        return rec

    @classmethod
    def _convert(cls, known: dict, strict: bool) -> dict:
        return known

    def to_dict(self) -> dict:
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        out |= self.extra
        keys = getattr(self, "_keys", None)
        return {k: out[k] for k in keys} if keys is not None else out


def _plain(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


@dataclass
class Point(Record):
    """One frontier point as written: :class:`leap.workflow.frontier.FrontierPoint`'s fields, and the
    exit advantage over the same model's truncation (``None`` for a truncation point)."""

    rule: str
    setting: Any = None
    exit_rate: float | None = None
    mean_exit_layer: float | None = None
    layer_reduction: float | None = None
    quality: float | None = None
    exit_advantage: float | None = None
    extra: dict = field(default_factory=dict)

    def frontier_point(self) -> FrontierPoint:
        return FrontierPoint(
            self.rule, self.setting, self.exit_rate, self.mean_exit_layer, self.layer_reduction, self.quality
        )


@dataclass
class Frontier(Record):
    """Truncation at every layer, the config's rule, and the sweeps (:func:`leap.workflow.evaluate.frontier_record`)."""

    truncation: list[Point] = field(default_factory=list)
    at_config: Point | None = None
    sweep: list[Point] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @classmethod
    def _convert(cls, known: dict, strict: bool) -> dict:
        out = dict(known)
        out["truncation"] = [Point.from_dict(p, strict) for p in known.get("truncation", [])]
        out["sweep"] = [Point.from_dict(p, strict) for p in known.get("sweep", [])]
        if known.get("at_config") is not None:
            out["at_config"] = Point.from_dict(known["at_config"], strict)
        return out

    def points(self, rule: str) -> list[Point]:
        """The sweep points of one rule (``convergence``, ``pabee``, ``common_depth``, ``oracle``)."""
        return [p for p in self.sweep if p.rule == rule]


@dataclass
class PairSplit(Record):
    """One split of a scored pair set (STS-B, QQP) on exited and full embeddings."""

    spearman_exit: float
    spearman_full: float
    exit_rate: float
    expected_exit_layer: float
    layer_reduction: float
    n_pairs: int | None = None
    spearman_per_layer: list[float] = field(default_factory=list)
    exit_distribution: list[float] = field(default_factory=list)
    cumulative_exit: list[float] = field(default_factory=list)
    frontier: Frontier | None = None
    ap_exit: float | None = None
    ap_full: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def _convert(cls, known: dict, strict: bool) -> dict:
        out = dict(known)
        if known.get("frontier") is not None:
            out["frontier"] = Frontier.from_dict(known["frontier"], strict)
        return out


@dataclass
class PairEval(Record):
    """``stsb.json`` / ``qqp.json``: the exit rule, the depth, whether maps were applied, the splits."""

    num_layers: int
    splits: dict[str, PairSplit]
    exit: dict = field(default_factory=dict)
    layer_maps: bool = False
    layer_mixing: dict | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def _convert(cls, known: dict, strict: bool) -> dict:
        return {**known, "splits": {k: PairSplit.from_dict(v, strict) for k, v in known["splits"].items()}}

    def split(self, name: str = "test") -> PairSplit:
        """One split (``test`` by default, else the first there is)."""
        return self.splits.get(name) or next(iter(self.splits.values()))


@dataclass
class HeadsSplit(Record):
    """The test split of the off-ramps: Spearman of the per-pair exit, and where sentences stopped."""

    spearman_exit: float
    exit_rate: float
    expected_exit_layer: float
    layer_reduction: float
    extra: dict = field(default_factory=dict)


@dataclass
class HeadsEval(Record):
    """``stsb_heads.json``: DeeBERT-style off-ramps on the baseline (per-pair exit)."""

    test: HeadsSplit
    frontier: Frontier | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def _convert(cls, known: dict, strict: bool) -> dict:
        out = {**known, "test": HeadsSplit.from_dict(known["test"], strict)}
        if known.get("frontier") is not None:
            out["frontier"] = Frontier.from_dict(known["frontier"], strict)
        return out


@dataclass
class Diagnostic(Record):
    """``diagnostic.json``: the exit diagnostic of a published checkpoint (paper sec 5.2, Table 2)."""

    exit: dict
    layers: list[int]
    similarity_to_final: list[float | None]
    exit_rate: float
    expected_exit_layer: float
    layer_reduction: float
    monitoring_overhead: float | None
    verdict: str
    extra: dict = field(default_factory=dict)


@dataclass
class LayerAnalysis(Record):
    """``layers.json``: the per-layer analyses of one model (paper sec 5.1-5.3, Tables 3, 4, 8, 9, 13)."""

    num_layers: int
    similarity_to_final: list[float | None] = field(default_factory=list)
    stability: list[float | None] = field(default_factory=list)
    stability_mean: float | None = None
    contraction_ratios: list[float | None] = field(default_factory=list)
    median_contraction: float | None = None
    final_aligned_displacement: list[float | None] = field(default_factory=list)
    nn_at_10: list[float] = field(default_factory=list)
    nn_failure_rate: list[float] = field(default_factory=list)
    cumulative_exit: list[float] = field(default_factory=list)
    anisotropy: Any = None
    theta_sweep: list[dict] | None = None
    extra: dict = field(default_factory=dict)

    def series(self, key: str) -> list:
        """A per-layer series by name (``similarity_to_final``, ``nn_at_10``, ...)."""
        return getattr(self, key) if hasattr(self, key) else self.extra[key]


@dataclass
class LatencyRow(Record):
    """One batch size of ``leap bench`` (paper Table 7)."""

    batch_size: int
    full_ms: float
    exit_ms: float
    speedup: float | None = None
    layer_reduction: float | None = None
    efficiency: float | None = None
    monitoring_overhead: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class LatencyRun(Record):
    """``latency.json``: one row per batch size and the machine it ran on."""

    rows: list[LatencyRow]
    device: str | None = None
    device_name: str | None = None
    dtype: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def _convert(cls, known: dict, strict: bool) -> dict:
        return {**known, "rows": [LatencyRow.from_dict(r, strict) for r in known["rows"]]}

    def speedup(self, batch_size: int) -> float | None:
        return next((r.speedup for r in self.rows if r.batch_size == batch_size), None)


@dataclass
class RetrievalEval(Record):
    """``beir_<set>.json``: NDCG / recall at full depth and under exit, both settings' frontiers."""

    dataset: str
    full: dict[str, float]
    exit: dict[str, Any]
    frontier: Frontier | None = None
    frontier_query_only: Frontier | None = None
    exit_query_only: dict[str, Any] = field(default_factory=dict)
    dev: dict | None = None
    layer_mixing: dict | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def _convert(cls, known: dict, strict: bool) -> dict:
        out = dict(known)
        for k in ("frontier", "frontier_query_only"):
            if known.get(k) is not None:
                out[k] = Frontier.from_dict(known[k], strict)
        return out

    def ndcg(self, k: int = 10, exited: bool = False) -> float:
        return (self.exit if exited else self.full)[f"NDCG@{k}"]

    def exit_rate(self, side: str = "corpus") -> float:
        """The exit rate of the documents (``corpus``) or the queries (``query``) under the rule."""
        return self.exit[f"{side}_exit"]["exit_rate"]

    def cumulative_exit(self, side: str = "corpus") -> list[float]:
        return self.exit[f"{side}_exit"]["cumulative_exit"]


@dataclass
class SeedSet(Generic[R]):
    """One record per seed, and the summaries tables need: mean, seed values, t-interval."""

    records: list[R]

    def __len__(self) -> int:
        return len(self.records)

    def __bool__(self) -> bool:
        return bool(self.records)

    def values(self, get: Callable[[R], Any]) -> list[Any]:
        return [get(r) for r in self.records]

    def mean_list(self, get: Callable[[R], Sequence[float | None]]) -> list[float | None]:
        """Element-wise mean over seeds of a per-layer series (:func:`leap.workflow.results.mean_list`)."""
        return mean_list(self.values(get))

    def mean(self, get: Callable[[R], float | None]) -> float | None:
        return mean(self.values(get))

    def interval(self, get: Callable[[R], float | None]) -> str:
        """``mean [95% t-interval]`` (:func:`leap.workflow.results.seed_interval`)."""
        return seed_interval(self.values(get))

    def seeds_text(self, get: Callable[[R], float | None]) -> str:
        """``a / b / c`` (:func:`leap.workflow.results.seed_values`)."""
        return seed_values(self.values(get))

    def summary(self, get: Callable[[R], float | None]) -> dict:
        return seed_summary(self.values(get))


def pair_splits(res: Results, variant: str, name: str = "stsb", split: str = "test") -> SeedSet[PairSplit]:
    """One split of a pair-set evaluation over the seeds of ``variant``."""
    return SeedSet([PairEval.from_dict(d).split(split) for d in runs(res, variant, name)])


def layer_runs(res: Results, variant: str) -> SeedSet[LayerAnalysis]:
    return SeedSet([LayerAnalysis.from_dict(d) for d in runs(res, variant, "layers")])


def heads_runs(res: Results, variant: str = "deebert") -> SeedSet[HeadsEval]:
    return SeedSet([HeadsEval.from_dict(d) for d in runs(res, variant, "stsb_heads")])


def latency_runs(res: Results, variant: str) -> SeedSet[LatencyRun]:
    return SeedSet([LatencyRun.from_dict(d) for d in runs(res, variant, "latency")])


def retrieval_runs(res: Results, variant: str) -> dict[str, SeedSet[RetrievalEval]]:
    """``{dataset: SeedSet}`` of one variant's BEIR evaluations."""
    out: dict[str, list[RetrievalEval]] = {}
    for _, evals in sorted(res.get(variant, {}).items()):
        for name, d in evals.items():
            if name.startswith("beir_"):
                r = RetrievalEval.from_dict(d)
                out.setdefault(r.dataset, []).append(r)
    return {k: SeedSet(v) for k, v in out.items()}


def aligned_points(sets: Iterable[Frontier], rule: str) -> list[list[Point]]:
    """The sweep points of ``rule`` of several seeds, grouped by position (``[setting][seed]``)."""
    per_seed = [f.points(rule) for f in sets]
    return [list(group) for group in zip(*per_seed)] if per_seed else []


def mean_of(points: Sequence[Point], get: Callable[[Point], float | None]) -> float | None:
    return mean([get(p) for p in points])


RECORD_TYPES: dict[str, type[Record]] = {
    "stsb": PairEval,
    "qqp": PairEval,
    "layers": LayerAnalysis,
    "latency": LatencyRun,
    "stsb_heads": HeadsEval,
    "diagnostic": Diagnostic,
}
"""Evaluation name -> record type (``beir_<set>`` -> :class:`RetrievalEval`)."""


def record_type(name: str) -> type[Record] | None:
    """The record type of an evaluation JSON by its name (``stsb``, ``beir_scifact``, ...), if typed."""
    return RetrievalEval if name.startswith("beir_") else RECORD_TYPES.get(name)


def write_record(path: str | os.PathLike, d: dict) -> dict:
    """Write an evaluation JSON through its record type (by file name): a writer that drops
    a field the readers need fails here, in the job that wrote it, not in a table later."""
    from leap.files import write_json

    kind = record_type(Path(path).stem)
    out = kind.from_dict(d, strict=True).to_dict() if kind else d
    write_json(path, out)
    return out
