"""The fastest serving path within a quality budget, measured on the user's data and machine.

One exit-enabled model can be served many ways on a CPU: torch or ONNX Runtime, fp32 or int8
weights, each at full depth, cut at a fixed layer (that layer's map applied) or under the
convergence exit rule (paper Eq. 6) over a theta sweep. Which one to run depends on the
quality budget, the batch size and the machine, and the differences are large (ONNX Runtime
int8 at full depth is several times faster than sentence-transformers on torch, with a
smaller quality shift than most exit rules).

* :func:`measure_paths` scores every path against full-depth fp32 inference on the user's
  sentences (NN@10 agreement, mean cosine and, with scored pairs, the Spearman drop of the
  embeddings ``encode`` returns, the common-depth Spearman beside it) from one full pass per
  engine, and times every path end to end (tokenisation included), interleaved in one
  process (:func:`leap.deploy.bench.interleaved_ms`).
* :func:`choose` picks the fastest path that meets the :class:`leap.deploy.calibrate.Budget` at the
  first batch size measured.
* :func:`calibrate_paths` does both for a model folder, exporting the ONNX graphs it needs
  when they are missing, and writes the choice into ``leap_exit.json`` (the rule, and a
  ``serving`` record: backend, precision, threads, the measured table, the data hash and the
  machine) with the table of every path beside it. Loading the folder then serves that path
  (:func:`leap.serving.model.load_exit_model` with no ``backend``).

Example:
    >>> from leap.deploy import Budget
    >>> from leap.deploy.serving_paths import calibrate_paths
    >>> res = calibrate_paths("my-model", sentences, Budget(nn10=0.95), batch_sizes=(1, 32))
    >>> res.chosen.backend, res.chosen.rule.strategy
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leap.core import common_depth, metrics
from leap.core.early_exit import simulate_exit
from leap.core.exit_config import CALIBRATION_KEY, EXIT_CONFIG_FILE, SERVING_BACKENDS, SERVING_KEY, ExitConfig
from leap.core.quiet import third_party_to_log
from leap.core.text_table import fmt, table
from leap.deploy.calibrate import DEFAULT_THETAS, Budget, per_row_agreement
from leap.deploy.path_choice import RESAMPLES, PairResamples, choose, in_budget, quality_intervals
from leap.errors import LeapError
from leap.files import check_writable, write_text
from leap.serving.folder import ModelFolder

log = logging.getLogger(__name__)

ONNX_BACKENDS = tuple(b for b in SERVING_BACKENDS if b != "torch")
"""The ONNX Runtime backends a calibration measures (plain and fused graphs, fp32 and int8)."""

CHOICE_RULE = (
    "in budget on the pessimistic end of each 95% bootstrap interval; of the paths in budget, those whose "
    "timing range overlaps the fastest one's are tied; a tied path slower than another beyond both ranges at "
    "another batch size drops out, and the best quality of the rest is served"
)
"""How the served path was chosen, as the calibration record and the table say it."""

TABLE_FILE = "serving_paths.txt"
"""The table of every measured path that :func:`calibrate_paths` writes into the model folder."""


@dataclass
class PathResult:
    """One serving path and what it measured: quality against full-depth fp32 inference,
    exit statistics, and median ms/sentence per batch size."""

    backend: str  # one of SERVING_BACKENDS
    rule: ExitConfig
    exit_rate: float
    expected_exit_layer: float
    layer_reduction: float
    nn10: float
    mean_cosine: float
    spearman: float | None = None
    spearman_drop: float | None = None
    spearman_common_depth: float | None = None
    ms: dict[int, float] = field(default_factory=dict)  # batch size -> ms/sentence (median of rounds)
    meets_budget: bool = False  # on the pessimistic end of every interval (path_choice.in_budget)
    nn10_ci: tuple[float, float] | None = None
    mean_cosine_ci: tuple[float, float] | None = None
    spearman_drop_ci: tuple[float, float] | None = None
    ms_range: dict[int, tuple[float, float]] = field(default_factory=dict)  # batch size -> (fastest, slowest) round

    @property
    def kind(self) -> str:
        return {"none": "full", "truncate": "cut"}.get(self.rule.strategy, "exit")

    @property
    def precision(self) -> str:
        return "int8" if self.backend.endswith("int8") else "fp32"

    @property
    def name(self) -> str:
        r = self.rule
        how = {"full": "full depth", "cut": f"cut at layer {r.min_layer}"}.get(
            self.kind, f"exit theta {r.theta:g} l_min {r.min_layer}"
        )
        return f"{self.backend}, {how}"

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.name, "backend": self.backend, "precision": self.precision, "kind": self.kind}
        out |= self.rule.to_dict()
        for k in ("exit_rate", "expected_exit_layer", "layer_reduction", "nn10", "mean_cosine"):
            out[k] = getattr(self, k)
        for k in ("spearman", "spearman_drop", "spearman_common_depth"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        for k in ("nn10_ci", "mean_cosine_ci", "spearman_drop_ci"):
            if getattr(self, k) is not None:
                out[k] = list(getattr(self, k))
        out |= {f"ms_b{b}": v for b, v in self.ms.items()}
        out |= {f"ms_b{b}_range": list(v) for b, v in self.ms_range.items()}
        out["meets_budget"] = self.meets_budget
        return out


def path_from_dict(d: dict[str, Any]) -> PathResult:
    """A :class:`PathResult` back from its ``to_dict`` row (a saved table)."""
    rule = ExitConfig.from_dict({k: d[k] for k in ExitConfig().to_dict()})  # the rule's fields of the row
    ms = {int(k[4:]): v for k, v in d.items() if k.startswith("ms_b") and not k.endswith("_range")}
    ms_range = {int(k[4:].removesuffix("_range")): tuple(v) for k, v in d.items() if k.endswith("_range")}
    keys = ("exit_rate", "expected_exit_layer", "layer_reduction", "nn10", "mean_cosine")
    opt = {k: d.get(k) for k in ("spearman", "spearman_drop", "spearman_common_depth")}
    cis = {k: tuple(d[k]) for k in ("nn10_ci", "mean_cosine_ci", "spearman_drop_ci") if d.get(k) is not None}
    return PathResult(
        d["backend"],
        rule,
        **{k: d[k] for k in keys},
        **opt,
        ms=ms,
        meets_budget=d["meets_budget"],
        **cis,
        ms_range=ms_range,
    )


@dataclass
class PathsResult:
    """Every path measured, the chosen one (``None`` only when nothing meets the budget) and
    the settings they were measured under."""

    paths: list[PathResult]
    chosen: PathResult | None
    budget: Budget
    batch_sizes: tuple[int, ...]
    threads: int | None
    n: int
    skipped: list[str] = field(default_factory=list)  # engines not measured, and why


def candidate_rules(
    num_layers: int, thetas: Sequence[float], min_layers: Sequence[int], patience: int = 1
) -> list[ExitConfig]:
    """Full depth, a cut at every layer below the last, and convergence exit over ``thetas`` x
    ``min_layers``."""
    rules = [ExitConfig(strategy="none")]
    rules += [ExitConfig(strategy="truncate", min_layer=l) for l in range(1, num_layers)]
    rules += [
        ExitConfig(strategy="convergence", theta=float(t), patience=patience, min_layer=int(m))
        for m in min_layers
        for t in thetas
    ]
    return [r.resolve(num_layers) for r in rules]


def score_paths(
    backend: str,
    layer_vectors: torch.Tensor,
    embed_vectors: torch.Tensor,
    rules: Sequence[ExitConfig],
    reference: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    resamples: int = RESAMPLES,
) -> list[PathResult]:
    """Quality of each rule on one engine's full pass (``[L, N, d]`` raw and as-returned
    vectors) against ``reference`` (``[N, d]`` normalised full-depth fp32 embeddings), each
    figure with its bootstrap interval (:mod:`leap.deploy.path_choice`)."""
    from scipy.stats import spearmanr

    L = layer_vectors.shape[0]
    full_sp, resampled = None, None
    if pairs is not None:
        i1, i2, gold = pairs
        ref_scores = (reference[i1] * reference[i2]).sum(-1)
        full_sp = float(spearmanr(ref_scores, gold).statistic)
        resampled = PairResamples(gold, ref_scores, resamples)
    unit = F.normalize(embed_vectors.float(), dim=-1).numpy()  # [L, N, d]
    out = []
    for rule in rules:
        emb, layers = simulate_exit(layer_vectors, rule, embed_vectors=embed_vectors)
        overlaps, cosines = per_row_agreement(emb, reference)
        scores = (emb[i1] * emb[i2]).sum(-1) if pairs is not None else None
        res = PathResult(
            backend,
            rule,
            exit_rate=metrics.exit_rate(layers, L),
            expected_exit_layer=metrics.expected_exit_layer(layers),
            layer_reduction=metrics.layer_reduction(layers, L),
            nn10=float(overlaps.mean()),
            mean_cosine=float(cosines.mean()),
            **quality_intervals(overlaps, cosines, scores, resampled, resamples),
        )
        if pairs is not None:
            res.spearman = float(spearmanr(scores, gold).statistic)
            res.spearman_drop = full_sp - res.spearman
            stack = common_depth.stack_from_layer_vectors(unit, layers)
            cd = common_depth.pair_similarity(stack, layers, i1, i2)
            res.spearman_common_depth = float(spearmanr(cd, gold).statistic)
        out.append(res)
    return out


def time_paths(
    engines: dict[str, Any],
    paths: Sequence[PathResult],
    sentences: Sequence[str],
    batch_sizes: Sequence[int],
    rounds: int = 3,
) -> None:
    """Fill each path's ``ms`` (median ms/sentence over interleaved rounds, tokenisation
    included) at every batch size; ``engines``: backend -> a loaded exit encoder."""
    from leap.deploy.bench import interleaved_ms

    def encoder(p: PathResult) -> Any:
        model = engines[p.backend]
        return lambda texts, bs: model.encode(texts, batch_size=bs, exit=p.rule, show_progress_bar=False)

    fns = {p.name: encoder(p) for p in paths}
    for bs in batch_sizes:
        times = interleaved_ms(fns, list(sentences), bs, rounds)
        for p in paths:
            p.ms[int(bs)] = float(np.median(times[p.name]))
            p.ms_range[int(bs)] = (float(min(times[p.name])), float(max(times[p.name])))


def onnx_export_needed(folder: ModelFolder, num_layers: int, first_layer: int) -> str | None:
    """Why the folder's ONNX export cannot serve every path (``None``: it can)."""
    m = folder.onnx_manifest
    if m is None:
        return "no ONNX export"
    if m.get("weights_sha256") != folder.weights_sha256:
        return "the export was made from other weights"
    if not m.get("int8"):
        return "the export has no int8 graphs"
    if "fused" not in m:
        return "the export predates fused graphs"
    if m["first_segment_end"] > first_layer:
        return f"its first segment ends after layer {first_layer}"
    missing = [k for k in range(1, num_layers) if k < m["first_segment_end"] and str(k) not in m.get("truncations", {})]
    return f"it has no graph for cuts at layers {missing}" if missing else None


def load_engines(
    folder: ModelFolder,
    num_layers: int,
    rules: Sequence[ExitConfig],
    threads: int | None,
    export: bool,
    backends: Sequence[str] = ONNX_BACKENDS,
) -> tuple[dict[str, Any], list[str]]:
    """The ONNX Runtime engines (plain and fused, fp32 and int8) for ``folder``, exported first
    when needed and ``export``; ``(engines, skipped)`` where ``skipped`` says why an engine is
    missing."""
    wanted = [b for b in backends if b != "torch"]
    if importlib.util.find_spec("onnxruntime") is None:
        return {}, [f"{', '.join(wanted)}: onnxruntime is not installed (pip install leap-exit[onnx])"]
    from leap.serving.model import ExitSentenceTransformer

    first = min(r.first_pooled_layer() for r in rules if r.strategy == "convergence")
    why = onnx_export_needed(folder, num_layers, first)
    if why is not None:
        cmd = f"leap export {folder.path} --int8 --truncations {' '.join(map(str, range(1, num_layers)))}"
        if not export:
            return {}, [f"{', '.join(wanted)}: {why}; run `{cmd}` (or calibrate without --no-export)"]
        from leap.serving.onnx_export import export_onnx

        log.info("exporting ONNX graphs into %s (%s)", folder.path, why)
        manifest = export_onnx(folder, int8=True, truncations=range(1, num_layers), first_segment_end=first)
        folder = dataclasses.replace(folder, onnx_manifest=manifest)
    skipped = []
    if not folder.onnx_manifest.get("fused") and any("fused" in b for b in wanted):
        wanted = [b for b in wanted if "fused" not in b]
        skipped.append("onnx-fused, onnx-fused-int8: ONNX Runtime's optimizer cannot fuse this architecture")
    engines = {b: ExitSentenceTransformer(folder, backend=b, threads=threads) for b in wanted}
    return engines, skipped


def measure_paths(
    folder: str | os.PathLike | ModelFolder,
    sentences: Sequence[str],
    budget: Budget,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    thetas: Sequence[float] = DEFAULT_THETAS,
    min_layers: Sequence[int] | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    threads: int | None = None,
    timing_sentences: int = 64,
    rounds: int = 3,
    backends: Sequence[str] = SERVING_BACKENDS,
    export: bool = True,
    resamples: int = RESAMPLES,
) -> PathsResult:
    """Every serving path of the model in ``folder`` on ``sentences``: quality from one full
    pass per engine with its bootstrap interval (``resamples``), speed on ``timing_sentences``
    of them (evenly spaced) over ``rounds`` interleaved rounds, the budget checked on each
    interval's pessimistic end, and the path to serve at ``batch_sizes[0]`` chosen
    (:func:`leap.deploy.path_choice.choose`)."""
    from leap.serving.model import ExitSentenceTransformer

    sents = [s for s in sentences if s.strip()]
    if len(sents) < 11:
        raise LeapError(f"calibration needs at least 11 non-empty sentences (NN@10), got {len(sents)}")
    bad = [b for b in backends if b not in SERVING_BACKENDS]
    if bad or not batch_sizes or min(batch_sizes) < 1:
        raise LeapError(f"backends must be among {SERVING_BACKENDS} and batch sizes >= 1, got {bad} {batch_sizes}")
    if threads:
        torch.set_num_threads(threads)
    info = ModelFolder.read(folder)
    info.require_local("measuring serving paths")
    torch_model = ExitSentenceTransformer(info, device="cpu")
    L = torch_model.num_layers
    base = torch_model.exit_config
    lmins = list(min_layers) if min_layers else sorted({base.min_layer, min(L - 1, base.min_layer + 1)})
    rules = candidate_rules(L, thetas, lmins)
    engines: dict[str, Any] = {"torch": torch_model}
    skipped: list[str] = []
    if any(b != "torch" for b in backends):
        onnx, skipped = load_engines(info, L, rules, threads, export, backends)
        engines |= onnx
    v = torch_model.layer_embeddings(sents)
    reference = F.normalize(torch_model.embed_vectors(v)[-1].float(), dim=-1).numpy()
    paths: list[PathResult] = []
    for backend, model in engines.items():
        if backend not in backends:
            continue
        lv = v if backend == "torch" else model.layer_embeddings(sents)
        paths += score_paths(backend, lv, model.embed_vectors(lv), rules, reference, pairs, resamples)
    for p in paths:
        p.meets_budget = in_budget(budget, p.to_dict())
    idx = np.unique(np.linspace(0, len(sents) - 1, min(timing_sentences, len(sents))).astype(int))
    time_paths(engines, paths, [sents[i] for i in idx], batch_sizes, rounds)
    chosen = choose(paths, int(batch_sizes[0]))
    return PathsResult(paths, chosen, budget, tuple(int(b) for b in batch_sizes), threads, len(sents), skipped)


def serving_record(result: PathsResult, sentences: Sequence[str], source: str) -> dict[str, Any]:
    """What :func:`calibrate_paths` saves beside the chosen rule (``leap_exit.json``)."""
    from dataclasses import asdict

    from leap.deploy.bench import environment

    chosen = result.chosen
    assert chosen is not None
    return {
        "backend": chosen.backend,
        "precision": chosen.precision,
        "path": chosen.name,
        "threads": result.threads,
        "chosen_at_batch_size": result.batch_sizes[0],
        "batch_sizes": list(result.batch_sizes),
        "budget": asdict(result.budget),
        "budget_text": result.budget.describe(),
        "choice": CHOICE_RULE,
        "data": source,
        "data_sha256": hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest(),
        "n_sentences": result.n,
        "skipped": result.skipped,
        "machine": environment(torch.device("cpu")),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "paths": [p.to_dict() for p in result.paths],
    }


def _with_interval(value: float | None, interval: Any, pct: bool = False, digits: int = 3) -> str:
    if value is None:
        return "-"
    scale = 100 if pct else 1
    text = f"{scale * value:.{digits}f}"
    return text if not interval else f"{text} [{scale * interval[0]:.{digits}f}, {scale * interval[1]:.{digits}f}]"


def paths_table(result: PathsResult) -> str:
    """Every measured path as a text table, fastest first at the first batch size: quality
    against full-depth fp32 with its 95% bootstrap interval, exit statistics, ms/sentence per
    batch size with the range of the timing rounds, and whether the budget is met on the
    interval's pessimistic end (the path served is marked)."""
    pairs = any(p.spearman is not None for p in result.paths)
    rows = sorted(result.paths, key=lambda p: p.ms[result.batch_sizes[0]])
    header = ["path", "precision", "exit rate", "E[l]", "NN@10", "mean cosine"]
    header += ["Spearman drop (points)", "common-depth Spearman"] if pairs else []
    header += [f"ms, batch {b}" for b in result.batch_sizes] + ["in budget"]
    body = []
    for p in rows:
        cells = [p.name, p.precision, fmt(p.exit_rate, pct=True), fmt(p.expected_exit_layer)]
        cells += [_with_interval(p.nn10, p.nn10_ci), _with_interval(p.mean_cosine, p.mean_cosine_ci)]
        if pairs:
            cells += [
                _with_interval(p.spearman_drop, p.spearman_drop_ci, pct=True, digits=2),
                fmt(p.spearman_common_depth),
            ]
        cells += [_with_interval(p.ms[b], p.ms_range.get(b), digits=2) for b in result.batch_sizes]
        cells.append(("served" if p is result.chosen else "yes") if p.meets_budget else "")
        body.append(cells)
    return table(header, body)


def calibrate_paths(
    folder: str | os.PathLike | ModelFolder, sentences: Sequence[str], budget: Budget, source: str = "", **kwargs: Any
) -> PathsResult:
    """:func:`measure_paths`, then the chosen path written into the folder: its rule and the
    ``serving`` record and a calibration record (the monitor's reference) into
    ``leap_exit.json``, the table of every path into :data:`TABLE_FILE`. Nothing is written
    when no path meets the budget; the files written are checked before anything is measured."""
    info = ModelFolder.read(folder)
    path = info.require_local("calibration")
    check_writable(path / EXIT_CONFIG_FILE, path / TABLE_FILE)
    with third_party_to_log(log):
        result = measure_paths(info, sentences, budget, **kwargs)
    if result.chosen is None:
        return result
    sents = [s for s in sentences if s.strip()]
    record = serving_record(result, sents, source)
    calibration = {k: record[k] for k in ("data", "data_sha256", "n_sentences", "budget", "date")}
    calibration["achieved"] = result.chosen.to_dict()  # the monitor's reference (leap.deploy.monitor.ExitMonitor)
    extra = {CALIBRATION_KEY: calibration, SERVING_KEY: record}
    head = f"budget: {result.budget.describe()}\nchoice: {CHOICE_RULE}\n"
    write_text(path / TABLE_FILE, f"{head}\n{paths_table(result)}\n")
    result.chosen.rule.save(path, extra=extra)
    return result
