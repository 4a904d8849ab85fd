"""The speed-quality frontier: dynamic exit against static truncation of the same model.

Early exit only pays if it beats the trivial alternative a user has: cut the model at a
fixed layer. Everything here works on the pooled vectors of one full pass
(``[L, N, d]``, :meth:`leap.serving.model.ExitSentenceTransformer.layer_embeddings`), so a theta
sweep and every truncation depth cost no re-encoding (see the README's frontier section).

* Static truncation at layer ``l``: every sample returns ``e^(l)`` (E[l] = l).
* Dynamic exit: the exit rule's decisions (:func:`leap.core.early_exit.simulate_exit`), each
  sample returning the vector of its own exit layer.
* Exit advantage: exited quality minus the same model's truncation quality at the same
  E[l], linear between neighbouring layers (:func:`truncation_quality_at`). A model that
  carries per-layer maps (:class:`leap.core.layer_maps.LayerMaps`) is compared with its own
  mapped truncation: the same maps are applied on both sides.

* Common-depth scoring (rule ``common_depth``, not in the paper): convergence exit over
  the same thetas, but two inputs are compared at the depth both reached
  (:mod:`leap.core.common_depth`), so no cross-depth cosine enters the score.
* The exit ceiling (rule ``oracle``, not deployable, not in the paper): an input stops at
  the first layer ``l >= l_min`` whose returned vector (maps applied) has cosine ``>= tau``
  with its own final-layer vector (:func:`oracle_layers`), over a tau sweep. It reads the
  final layer, so it cannot be served; it bounds every rule that stops once the embedding
  has reached its final value, and so splits the gap to truncation into the rule's share
  and the model's.

Quality is any function of the ``[N, d]`` embeddings (``quality_fn``): STS Spearman of
pair cosines (:func:`pair_spearman`), retrieval NDCG@10 (:func:`retrieval_ndcg`); for
common-depth scoring a function of the ``[L, N, d]`` normalised vectors and the exit layers
(:func:`pair_spearman_common_depth`, :func:`retrieval_ndcg_common_depth`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from leap.core import common_depth, metrics
from leap.core.early_exit import simulate_exit
from leap.core.exit_config import ExitConfig
from leap.deploy.calibrate import DEFAULT_THETAS

QualityFn = Callable[[np.ndarray], float]
StackQualityFn = Callable[[np.ndarray, np.ndarray], float]
"""``(unit vectors [L, N, d], exit layers [N]) -> score``: quality under common-depth scoring."""

THETA_SWEEP = DEFAULT_THETAS
"""The frontier's default theta sweep: calibration's twelve values from 0.80 to 0.99."""
PABEE_SWEEP = ((0.95, 2), (0.97, 2), (0.98, 2), (0.99, 2), (0.95, 3), (0.97, 3), (0.99, 3))
"""PABEE (pabee_theta, pabee_patience) pairs swept on the frontier."""
ORACLE_SWEEP = (0.70, 0.75, 0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98)
"""Cosine-to-final thresholds tau of the oracle rule (the exit ceiling)."""
BAR_REDUCTION = 1.4
BAR_EXIT_RATE = 0.8
"""The bar of a useful exit point: at least 1.4x layer reduction with at least 80% of inputs
exiting (the one place these numbers live)."""
NOT_DEPLOYABLE = ("oracle",)


def meets_bar(exit_rate: float, layer_reduction: float) -> bool:
    """Whether an operating point is a useful exit: >= :data:`BAR_REDUCTION` fewer layers with
    >= :data:`BAR_EXIT_RATE` of inputs exiting."""
    return exit_rate >= BAR_EXIT_RATE and layer_reduction >= BAR_REDUCTION


"""Rules on the frontier that read the final layer: bounds, never a deployable operating point."""


@dataclass(frozen=True)
class FrontierPoint:
    """One operating point of one model on one benchmark.

    Attributes:
        rule: ``truncation``, ``convergence``, ``pabee``, ``common_depth`` (convergence
            exit, pairs compared at their common depth) or ``oracle`` (the exit ceiling).
        setting: the layer (truncation), theta (convergence), ``"theta/patience"`` (PABEE)
            or tau (oracle).
        exit_rate: fraction of samples with exit layer ``< L`` (truncation: 1 below ``L``).
        mean_exit_layer: ``E[l]``.
        layer_reduction: ``L / E[l]``.
        quality: the benchmark's score on the embeddings of that point.
    """

    rule: str
    setting: float | int | str
    exit_rate: float
    mean_exit_layer: float
    layer_reduction: float
    quality: float

    def to_dict(self) -> dict:
        return {
            "rule": self.rule,
            "setting": self.setting,
            "exit_rate": self.exit_rate,
            "mean_exit_layer": self.mean_exit_layer,
            "layer_reduction": self.layer_reduction,
            "quality": self.quality,
        }


def point_of(rule: str, setting: float | int | str, layers: np.ndarray, n_layers: int, quality: float) -> FrontierPoint:
    """The operating point of ``[N]`` exit layers (1-based) whose embeddings scored ``quality``."""
    return FrontierPoint(
        rule=rule,
        setting=setting,
        exit_rate=metrics.exit_rate(layers, n_layers),
        mean_exit_layer=metrics.expected_exit_layer(layers),
        layer_reduction=metrics.layer_reduction(layers, n_layers),
        quality=float(quality),
    )


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(1e-12)


def truncation_points(embed_vectors: Tensor, quality_fn: QualityFn) -> list[FrontierPoint]:
    """Quality of static truncation at every layer ``l = 1..L`` (every sample stops at ``l``).

    Args:
        embed_vectors: ``[L, N, d]`` vectors whose layer-``l`` slice is what a sample
            stopped at ``l`` returns (pooled vectors, or their per-layer mapped images).
        quality_fn: ``[N, d]`` L2-normalised embeddings -> score.
    """
    v = _unit(embed_vectors.float())
    n_layers = v.shape[0]
    out = []
    for l in range(1, n_layers + 1):
        out.append(
            FrontierPoint(
                rule="truncation",
                setting=l,
                exit_rate=1.0 if l < n_layers else 0.0,
                mean_exit_layer=float(l),
                layer_reduction=n_layers / l,
                quality=float(quality_fn(v[l - 1].numpy())),
            )
        )
    return out


def exit_point(
    rule_vectors: Tensor,
    embed_vectors: Tensor,
    config: ExitConfig,
    quality_fn: QualityFn,
    setting: float | int | str | None = None,
) -> tuple[FrontierPoint, np.ndarray]:
    """One dynamic-exit operating point and the ``[N]`` exit layers behind it.

    ``rule_vectors`` (``[L, N, d]``) are what the exit rule reads; each sample then returns
    its exit layer's slice of ``embed_vectors`` (the same tensor unless per-layer maps are
    applied to the returned embedding only).
    """
    _, layers = simulate_exit(rule_vectors, config)
    n_layers = rule_vectors.shape[0]
    rows = torch.arange(rule_vectors.shape[1])
    emb = _unit(embed_vectors.float()[torch.as_tensor(layers) - 1, rows]).numpy()
    if setting is None:
        setting = config.theta if config.strategy == "convergence" else f"{config.pabee_theta}/{config.pabee_patience}"
    return point_of(config.strategy, setting, layers, n_layers, quality_fn(emb)), layers


def sweep_points(
    rule_vectors: Tensor,
    embed_vectors: Tensor,
    base: ExitConfig,
    quality_fn: QualityFn,
    thetas: Iterable[float] = THETA_SWEEP,
    pabee: Iterable[tuple[float, int]] = PABEE_SWEEP,
) -> list[FrontierPoint]:
    """Convergence exit over ``thetas`` and PABEE over ``pabee`` (``base`` gives l_min, k)."""
    pts = [
        exit_point(rule_vectors, embed_vectors, replace(base, strategy="convergence", theta=float(t)), quality_fn)[0]
        for t in thetas
    ]
    for th, pat in pabee:
        cfg = replace(base, strategy="pabee", pabee_theta=float(th), pabee_patience=int(pat))
        pts.append(exit_point(rule_vectors, embed_vectors, cfg, quality_fn)[0])
    return pts


def common_depth_points(
    rule_vectors: Tensor,
    embed_vectors: Tensor,
    base: ExitConfig,
    quality_fn: StackQualityFn,
    thetas: Iterable[float] = THETA_SWEEP,
) -> list[FrontierPoint]:
    """Convergence exit over ``thetas`` scored at common depth (:mod:`leap.core.common_depth`):
    the same exits as :func:`sweep_points`, only the comparison differs."""
    unit = _unit(embed_vectors.float()).numpy()  # [L, N, d]
    n_layers = unit.shape[0]
    out = []
    for t in thetas:
        _, layers = simulate_exit(rule_vectors, replace(base, strategy="convergence", theta=float(t)))
        out.append(point_of("common_depth", float(t), layers, n_layers, quality_fn(unit, layers)))
    return out


def oracle_layers(embed_vectors: Tensor, min_layer: int, tau: float) -> np.ndarray:
    """``[N]`` exit layers of the oracle rule: the first layer ``l >= min_layer`` whose
    returned vector (``embed_vectors[l - 1]``, maps applied) has cosine ``>= tau`` with the
    input's own final-layer vector; ``L`` when none has. Reads the final layer: a bound,
    not a servable rule."""
    unit = _unit(embed_vectors.float())  # [L, N, d]
    to_final = (unit * unit[-1]).sum(-1)  # [L, N]
    reached = to_final >= tau
    reached[: max(0, min_layer - 1)] = False
    reached[-1] = True  # every input has stopped by the last layer
    return (reached.float().argmax(dim=0) + 1).numpy().astype(np.int64)  # first True, 1-based


def oracle_points(
    embed_vectors: Tensor,
    min_layer: int,
    quality_fn: QualityFn,
    taus: Iterable[float] = ORACLE_SWEEP,
) -> list[FrontierPoint]:
    """The oracle rule (:func:`oracle_layers`) over ``taus``: the exit ceiling on the frontier."""
    unit = _unit(embed_vectors.float())
    n_layers, rows = unit.shape[0], torch.arange(unit.shape[1])
    out = []
    for tau in taus:
        layers = oracle_layers(embed_vectors, min_layer, float(tau))
        quality = quality_fn(unit[torch.as_tensor(layers) - 1, rows].numpy())
        out.append(point_of("oracle", float(tau), layers, n_layers, quality))
    return out


def decompose_advantage(
    rule_vectors: Tensor,
    embed_vectors: Tensor,
    config: ExitConfig,
    quality_fn: QualityFn,
    truncation: Sequence[FrontierPoint],
    n_shuffles: int = 5,
    seed: int = 0,
) -> dict:
    """Split an exit point's advantage into what the rule's choice of *which* samples exit
    buys and what mixing depths costs.

    ``random`` is the quality when the same exit layers are dealt to samples at random
    (mean of ``n_shuffles`` shuffles): the same mean depth and layer mix, no selection. Then
    ``selection_gain = quality - random`` (the rule picked the right samples) and
    ``mixing = random - truncation_at_same_depth`` (a mix of depths against one depth for
    all: cross-depth comparisons and the shape of the truncation curve), and
    ``exit_advantage = selection_gain + mixing``.
    """
    point, layers = exit_point(rule_vectors, embed_vectors, config, quality_fn)
    v = _unit(embed_vectors.float())
    rows = torch.arange(v.shape[1])
    rng = np.random.default_rng(seed)
    shuffled = [
        float(quality_fn(v[torch.as_tensor(rng.permutation(layers)) - 1, rows].numpy())) for _ in range(n_shuffles)
    ]
    random_q = float(np.mean(shuffled))
    trunc_q = truncation_quality_at(point.mean_exit_layer, truncation)
    return {
        "quality": point.quality,
        "random_same_layers": random_q,
        "truncation_at_same_depth": trunc_q,
        "selection_gain": point.quality - random_q,
        "mixing": random_q - trunc_q,
        "exit_advantage": point.quality - trunc_q,
    }


def truncation_quality_at(mean_exit_layer: float, truncation: Sequence[FrontierPoint]) -> float:
    """Truncation quality at a fractional depth: linear between neighbouring layers.

    ``truncation`` holds the points of layers ``1..L`` (:func:`truncation_points`). Depths
    outside ``[1, L]`` are clamped to the end points.
    """
    layers = np.asarray([p.mean_exit_layer for p in truncation], dtype=float)
    quality = np.asarray([p.quality for p in truncation], dtype=float)
    order = np.argsort(layers)
    return float(np.interp(mean_exit_layer, layers[order], quality[order]))


def exit_advantage(point: FrontierPoint, truncation: Sequence[FrontierPoint]) -> float:
    """Exited quality minus truncation quality at the same E[l] (> 0: exit pays)."""
    return point.quality - truncation_quality_at(point.mean_exit_layer, truncation)


# -- quality functions ------------------------------------------------------------------------
def pair_spearman(i1: np.ndarray, i2: np.ndarray, gold: np.ndarray) -> QualityFn:
    """STS quality: Spearman between the cosine of pairs ``(i1[k], i2[k])`` and ``gold``."""
    from scipy.stats import spearmanr

    def score(emb: np.ndarray) -> float:
        cos = (emb[i1] * emb[i2]).sum(-1)
        return float(spearmanr(cos, gold).statistic)

    return score


def pair_spearman_common_depth(i1: np.ndarray, i2: np.ndarray, gold: np.ndarray) -> StackQualityFn:
    """STS quality under common-depth scoring: Spearman of each pair's cosine at
    ``min(l_a, l_b)`` (:func:`leap.core.common_depth.pair_similarity`)."""
    from scipy.stats import spearmanr

    def score(unit: np.ndarray, layers: np.ndarray) -> float:
        stack = np.transpose(unit, (1, 0, 2))  # [N, L, d] view
        return float(spearmanr(common_depth.pair_similarity(stack, layers, i1, i2), gold).statistic)

    return score


def ranked_scores(
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    qrels: dict[str, dict[str, int]],
    k_values: Sequence[int] = (1, 3, 5, 10),
) -> Callable[[np.ndarray], dict[str, float]]:
    """``sims [Q, D] -> {NDCG@k, Recall@k}``: the top documents of each query scored by beir's
    evaluator (identical ids ignored)."""
    from beir.retrieval.evaluation import EvaluateRetrieval

    qids, dids = list(query_ids), list(doc_ids)
    top_k = max(k_values) + 1  # one spare: a document with the query's own id is dropped

    def score(sims: np.ndarray) -> dict[str, float]:
        k = min(top_k, sims.shape[1])
        top = np.argpartition(-sims, kth=k - 1, axis=1)[:, :k]
        results = {qid: {dids[j]: float(sims[i, j]) for j in top[i]} for i, qid in enumerate(qids)}
        ndcg, _map, recall, _p = EvaluateRetrieval.evaluate(qrels, results, list(k_values), ignore_identical_ids=True)
        return {**{k: float(v) for k, v in ndcg.items()}, **{k: float(v) for k, v in recall.items()}}

    return score


def retrieval_scores(
    query_rows: np.ndarray,
    doc_rows: np.ndarray,
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    qrels: dict[str, dict[str, int]],
    k_values: Sequence[int] = (1, 3, 5, 10),
) -> Callable[[np.ndarray], dict[str, float]]:
    """Exact cosine search scored by beir's evaluator (``NDCG@k`` and ``Recall@k``, identical
    ids ignored). The embeddings passed to the returned function hold queries and documents
    together; ``query_rows`` and ``doc_rows`` say which row is which."""
    ranked = ranked_scores(query_ids, doc_ids, qrels, k_values)
    return lambda emb: ranked(emb[query_rows] @ emb[doc_rows].T)  # [Q, D]


def retrieval_ndcg_common_depth(
    query_rows: np.ndarray,
    doc_rows: np.ndarray,
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    qrels: dict[str, dict[str, int]],
    k: int = 10,
) -> StackQualityFn:
    """NDCG@k when each query meets each document at their common depth
    (:func:`leap.core.common_depth.similarity`)."""
    ranked = ranked_scores(query_ids, doc_ids, qrels, k_values=(k,))

    def score(unit: np.ndarray, layers: np.ndarray) -> float:
        stack = np.transpose(unit, (1, 0, 2))  # [N, L, d] view
        sims = common_depth.similarity(stack[query_rows], layers[query_rows], stack[doc_rows], layers[doc_rows])
        return ranked(sims)[f"NDCG@{k}"]

    return score


def retrieval_ndcg(
    query_rows: np.ndarray,
    doc_rows: np.ndarray,
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    qrels: dict[str, dict[str, int]],
    k: int = 10,
) -> QualityFn:
    """Retrieval quality for the frontier: NDCG@k of :func:`retrieval_scores`."""
    scores = retrieval_scores(query_rows, doc_rows, query_ids, doc_ids, qrels, k_values=(k,))
    return lambda emb: scores(emb)[f"NDCG@{k}"]
