"""What the paper measures on a model; each function returns one JSON-ready dict
(written to ``results/{experiment}/{variant}/seed{seed}/eval/<name>.json``).

- :func:`evaluate_pairs`: a scored pair set (STS-B; QQP) on exited embeddings, each
  sentence with the embedding of its own exit layer; full depth beside it; every layer's
  score (static truncation); the frontier of the convergence and PABEE rules over their
  sweeps against truncation of the same model (:mod:`leap.workflow.frontier`). Spearman values are
  in [-1, 1] (the paper's 0.760). For 0/1 gold (QQP) it adds average precision
  (``ap_exit``, ``ap_full``; MTEB's pair-classification measure).
- :func:`layer_analysis`: similarity to final, inter-layer stability, cumulative exit,
  NN@10 and its failure rate, contraction ratios, final-aligned displacement, and the
  anisotropy (mean cosine of unrelated sentences) per layer (Tables 3, 4, 9, 13; Figs 1, 2, 4, 5).
- :func:`evaluate_beir`: exact cosine search, NDCG@1/3/5/10 at full depth and with early
  exit, exit distributions of corpus and queries (Tables 6, 15, 16), and the frontier on
  NDCG@10, in two settings: both sides exit (the paper's) and query-only (documents at full
  depth, as an index is built); test and dev splits. beir's evaluator is called with
  ``ignore_identical_ids=True`` (its default).
- Layer mixing, SLED-style (:mod:`leap.workflow.layer_mixing`), on the pair sets and BEIR sets.
- DeeBERT-style off-ramps on the baseline student: :mod:`leap.workflow.exit_heads`.

Every number comes from one full pass (:meth:`ExitSentenceTransformer.layer_embeddings`)
and :func:`leap.core.early_exit.simulate_exit`; the fast path is proven equal to it in the
tests, so sweeps need no re-encoding. A model with per-layer maps is scored with its maps
(what it serves), and its raw per-layer scores are kept beside.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

from leap.core import metrics
from leap.core.early_exit import simulate_exit
from leap.core.exit_config import ExitConfig
from leap.errors import LeapError
from leap.workflow import frontier
from leap.workflow.eval_engine import load_model, setup_threads

log = logging.getLogger(__name__)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (scipy)."""
    if len(a) < 2:
        raise LeapError("Spearman needs at least two pairs")
    return float(stats.spearmanr(a, b).statistic)


def pair_cos(emb: np.ndarray, i1: np.ndarray, i2: np.ndarray) -> np.ndarray:
    """Cosine of rows ``i1[k]`` and ``i2[k]`` of ``emb [N, d]``."""
    a, b = emb[i1], emb[i2]
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def exit_summary(layers: np.ndarray, n_layers: int) -> dict:
    """Exit rate, distribution, cumulative exit, E[l] and layer reduction of ``[N]`` exit layers."""
    return {
        "exit_rate": metrics.exit_rate(layers, n_layers),
        "exit_distribution": metrics.exit_distribution(layers, n_layers).tolist(),
        "cumulative_exit": metrics.cumulative_exit(layers, n_layers).tolist(),
        "expected_exit_layer": metrics.expected_exit_layer(layers),
        "layer_reduction": metrics.layer_reduction(layers, n_layers),
    }


def pair_index(df: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Unique sentences of a pair set and the row index of each side."""
    sents = list(dict.fromkeys(df["sentence1"].tolist() + df["sentence2"].tolist()))
    pos = {s: i for i, s in enumerate(sents)}
    i1 = np.asarray([pos[s] for s in df["sentence1"]], dtype=np.int64)
    i2 = np.asarray([pos[s] for s in df["sentence2"]], dtype=np.int64)
    return sents, i1, i2


def pair_bootstrap(cos: np.ndarray, gold: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile interval of Spearman over test pairs (``scipy.stats.bootstrap``, paired)."""
    res = stats.bootstrap(
        (cos, gold),
        lambda a, b: stats.spearmanr(a, b).statistic,
        paired=True,
        vectorized=False,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def frontier_record(
    rule_vectors: torch.Tensor,
    embed_vectors: torch.Tensor,
    exit: ExitConfig,
    quality: frontier.QualityFn,
    thetas: Sequence[float] = frontier.THETA_SWEEP,
    pabee: Sequence[tuple[float, int]] = frontier.PABEE_SWEEP,
    common_quality: frontier.StackQualityFn | None = None,
) -> dict:
    """Truncation at every layer, the rule at the config's setting, both sweeps (and the
    theta sweep under common-depth scoring, given ``common_quality``) and the oracle rule
    (the exit ceiling), each exit point with its exit advantage over truncation at the same
    E[l]. ``exit`` must be resolved (its ``min_layer`` set)."""
    trunc = frontier.truncation_points(embed_vectors, quality)
    at, _ = frontier.exit_point(rule_vectors, embed_vectors, exit, quality)

    def row(p: frontier.FrontierPoint) -> dict:
        return {**p.to_dict(), "exit_advantage": frontier.exit_advantage(p, trunc)}

    sweep = frontier.sweep_points(rule_vectors, embed_vectors, exit, quality, thetas=thetas, pabee=pabee)
    if common_quality is not None:
        sweep += frontier.common_depth_points(rule_vectors, embed_vectors, exit, common_quality, thetas=thetas)
    sweep += frontier.oracle_points(embed_vectors, exit.min_layer, quality)
    parts = frontier.decompose_advantage(rule_vectors, embed_vectors, exit, quality, trunc)
    return {
        "truncation": [p.to_dict() for p in trunc],
        "at_config": {**row(at), **{k: parts[k] for k in ("random_same_layers", "selection_gain", "mixing")}},
        "sweep": [row(p) for p in sweep],
    }


def evaluate_pairs(
    model: Any,
    pairs: pd.DataFrame,
    exit: ExitConfig,
    splits: Sequence[str] = ("dev", "test"),
    thetas: Sequence[float] = frontier.THETA_SWEEP,
    pabee: Sequence[tuple[float, int]] = frontier.PABEE_SWEEP,
    batch_size: int = 64,
    vectors_out: dict | None = None,
) -> dict:
    """A scored pair set (STS-B, QQP) on exited and full embeddings, per split.
    ``pairs``: ``split, sentence1, sentence2, score``. ``vectors_out`` (a dict) receives each
    split's ``(sentences, [L, N, d] pooled vectors)`` for reuse (the layer analyses)."""
    L = model.num_layers
    exit = exit.resolve(L)
    out: dict[str, Any] = {
        "exit": exit.to_dict(),
        "num_layers": L,
        "layer_maps": model.layer_maps is not None,
        "splits": {},
    }
    mixing: dict[str, tuple[np.ndarray, frontier.QualityFn]] = {}
    for split in splits:
        df = pairs[pairs["split"] == split]
        if df.empty:
            continue
        sents, i1, i2 = pair_index(df)
        t0 = time.perf_counter()
        v = model.layer_embeddings(sents, batch_size=batch_size)  # [L, N, d] raw pooled
        enc_s = time.perf_counter() - t0
        if vectors_out is not None:
            vectors_out[split] = (sents, v)
        ev = model.embed_vectors(v)  # what a sample stopped at each layer returns
        gold = df["score"].to_numpy(dtype=float)
        quality = frontier.pair_spearman(i1, i2, gold)
        served = F.normalize(ev.float(), dim=-1).numpy()
        emb, layers = simulate_exit(v, exit, embed_vectors=ev)
        cos_exit = pair_cos(emb, i1, i2)  # [pairs]
        pair_layers = np.concatenate([layers[i1], layers[i2]])
        res = {
            "n_pairs": int(len(df)),
            "n_sentences": len(sents),
            "encode_seconds": enc_s,
            "spearman_exit": spearman(cos_exit, gold),
            "spearman_exit_pair_ci95": pair_bootstrap(cos_exit, gold) if split == "test" else None,
            "spearman_full": quality(served[-1]),
            "spearman_per_layer": [quality(served[l]) for l in range(L)],
            **exit_summary(layers, L),
            "pair_exit_rate": metrics.exit_rate(pair_layers, L),
        }
        if model.layer_maps is not None:
            raw = F.normalize(v.float(), dim=-1).numpy()
            res["spearman_per_layer_raw"] = [quality(raw[l]) for l in range(L)]
        if set(np.unique(gold)) <= {0.0, 1.0} and len(np.unique(gold)) == 2:  # duplicate labels (QQP)
            from sklearn.metrics import average_precision_score

            res["ap_exit"] = float(average_precision_score(gold, cos_exit))
            res["ap_full"] = float(average_precision_score(gold, pair_cos(served[-1], i1, i2)))
        common = frontier.pair_spearman_common_depth(i1, i2, gold)
        res["frontier"] = frontier_record(v, ev, exit, quality, thetas=thetas, pabee=pabee, common_quality=common)
        out["splits"][split] = res
        mixing[split] = (v.float().numpy(), quality)
    if not out["splits"]:
        raise LeapError(f"no pairs for splits {list(splits)}")
    if "test" in mixing:
        from leap.workflow.layer_mixing import mixing_record

        dev = mixing.get("dev", (None, None))
        out["layer_mixing"] = mixing_record(*mixing["test"], *dev)
    return out


def anisotropy(layer_vectors: np.ndarray, n_pairs: int = 2000, seed: int = 0) -> list[float]:
    """``[L]``: mean cosine of random pairs of different sentences per layer (how narrow the
    cone is; 0.95 is an easy bar in an anisotropic space)."""
    L, N, _ = layer_vectors.shape
    rng = np.random.default_rng(seed)
    a = rng.integers(0, N, n_pairs)
    b = (a + 1 + rng.integers(0, N - 1, n_pairs)) % N
    v = layer_vectors / (np.linalg.norm(layer_vectors, axis=-1, keepdims=True) + 1e-12)
    return [float((v[l, a] * v[l, b]).sum(-1).mean()) for l in range(L)]


def _clean(x: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in np.asarray(x, dtype=float)]


def layer_analysis(
    model: Any,
    sentences: Sequence[str],
    exit: ExitConfig,
    k: int = 10,
    batch_size: int = 64,
    thetas: Sequence[float] = frontier.THETA_SWEEP,
    layer_vectors: torch.Tensor | None = None,
) -> dict:
    """Every per-layer analysis of the paper on ``sentences`` (one full pass, or the given
    ``[L, N, d]`` ``layer_vectors`` of exactly these sentences). The geometry is that of the
    raw layers (what the exit rule reads)."""
    sents = list(dict.fromkeys(sentences))
    if len(sents) <= k:
        raise LeapError(f"layer analysis needs more than k={k} distinct sentences, got {len(sents)}")
    if layer_vectors is not None and layer_vectors.shape[1] != len(sents):
        raise LeapError(f"layer_vectors hold {layer_vectors.shape[1]} sentences, not the {len(sents)} given")
    v = layer_vectors if layer_vectors is not None else model.layer_embeddings(sents, batch_size=batch_size)
    L = v.shape[0]
    exit = exit.resolve(L)
    _, layers = simulate_exit(v, exit)
    vn = v.numpy()
    nn, fail = metrics.nn_at_k_per_layer(vn, k=k)
    stab = metrics.inter_layer_stability(vn)
    out = {
        "n_sentences": len(sents),
        "num_layers": L,
        "exit": exit.to_dict(),
        "similarity_to_final": metrics.similarity_to_final(vn).tolist(),
        "stability": _clean(stab),
        "stability_mean": float(np.nanmean(stab)),
        "contraction_ratios": _clean(metrics.contraction_ratios(vn)),
        "median_contraction": metrics.median_contraction(vn),
        "final_aligned_displacement": _clean(metrics.final_aligned_displacement(vn)),
        "nn_at_10": nn.tolist(),
        "nn_failure_rate": fail.tolist(),
        "anisotropy": anisotropy(vn),
        **exit_summary(layers, L),
    }
    ev = model.embed_vectors(v)
    if model.layer_maps is not None:  # NN@10 of what the model serves at each depth
        nn_m, fail_m = metrics.nn_at_k_per_layer(ev.numpy(), k=k)
        out["nn_at_10_mapped"], out["nn_failure_rate_mapped"] = nn_m.tolist(), fail_m.tolist()
    # decision thresholds (Table 8): what each theta does to exits and to nearest neighbours
    final = ev[-1].numpy()
    sweep = []
    for th in thetas:
        emb, ly = simulate_exit(v, replace(exit, strategy="convergence", theta=float(th)), embed_vectors=ev)
        overlap = metrics.nn_overlap(emb, final, k)
        sweep.append(
            {
                "theta": float(th),
                **exit_summary(ly, L),
                "nn_at_10": float(overlap.mean()),
                "nn10_failure": float(np.mean(overlap < 0.5)),
            }
        )
    out["theta_sweep"] = sweep
    return out


def _retrieval_split(
    v: torch.Tensor,
    ev: torch.Tensor,
    qrows: np.ndarray,
    drows: np.ndarray,
    qids: list[str],
    dids: list[str],
    qrels: dict[str, dict[str, int]],
    exit: ExitConfig,
    k_values: Sequence[int],
    thetas: Sequence[float],
    pabee: Sequence[tuple[float, int]],
) -> dict:
    """One split of a retrieval set in both settings, from the pooled vectors of one pass.

    *Both exit* (the paper's): queries and documents under the rule. *Query-only* (as an
    index is deployed): documents embedded once at full depth, only queries under the rule;
    its truncation comparator cuts only the queries (maps applied)."""
    L = v.shape[0]
    rows = np.concatenate([qrows, drows])
    vs, evs = v[:, rows], ev[:, rows]  # queries first, then documents
    q, d = np.arange(len(qrows)), np.arange(len(qrows), len(rows))
    ndcg = frontier.retrieval_scores(q, d, qids, dids, qrels, k_values=k_values)
    emb, layers = simulate_exit(vs, exit, embed_vectors=evs)
    quality = frontier.retrieval_ndcg(q, d, qids, dids, qrels, k=10)
    common = frontier.retrieval_ndcg_common_depth(q, d, qids, dids, qrels, k=10)
    docs_full = F.normalize(evs[-1, d].float(), dim=-1).numpy()  # [D, d] the index, full depth
    ranked = frontier.ranked_scores(qids, dids, qrels, k_values=k_values)
    q_emb, q_layers = simulate_exit(vs[:, q], exit, embed_vectors=evs[:, q])
    query_quality = lambda e: ranked(e @ docs_full.T)["NDCG@10"]  # noqa: E731  [Q, d] queries at their depth
    return {
        "queries": len(qids),
        "full": ndcg(F.normalize(evs[-1].float(), dim=-1).numpy()),
        "exit": {
            **ndcg(emb),
            "corpus_exit": exit_summary(layers[d], L),
            "query_exit": exit_summary(layers[q], L),
            **exit_summary(layers, L),
        },
        "exit_query_only": {**ranked(q_emb @ docs_full.T), **exit_summary(q_layers, L)},
        "frontier": frontier_record(vs, evs, exit, quality, thetas=thetas, pabee=pabee, common_quality=common),
        "frontier_query_only": frontier_record(vs[:, q], evs[:, q], exit, query_quality, thetas=thetas, pabee=pabee),
    }


def evaluate_beir(
    model: Any,
    dataset: Any,
    exit: ExitConfig,
    batch_size: int = 64,
    k_values: Sequence[int] = (1, 3, 5, 10),
    thetas: Sequence[float] = frontier.THETA_SWEEP,
    pabee: Sequence[tuple[float, int]] = frontier.PABEE_SWEEP,
    vectors: tuple[torch.Tensor, float] | None = None,
) -> dict:
    """NDCG@k at full depth and with early exit on one BEIR set (:class:`leap.workflow.data.RetrievalSet`),
    from one full pass over its test and dev queries and documents (``dataset.pass_texts()``):
    the test split's figures at the top level (both settings, :func:`_retrieval_split`), the
    dev split's under ``dev`` (for choices made on dev), and the layer-mixing record
    (:mod:`leap.workflow.layer_mixing`, the contrast chosen on dev). ``vectors``: that pass
    already made (``[L, N, d]`` raw pooled vectors of those texts, and its seconds), as
    :mod:`leap.workflow.layer_vectors` writes it for checkpoints evaluated with and without maps."""
    from leap.workflow.layer_mixing import mixing_record

    L = model.num_layers
    exit = exit.resolve(L)
    qids, dev_qids, dids = list(dataset.queries), list(dataset.dev_queries), list(dataset.corpus)
    texts = dataset.pass_texts()
    if vectors is None:
        t0 = time.perf_counter()
        v = model.layer_embeddings(texts, batch_size=batch_size)  # [L, N, d] raw pooled
        seconds = time.perf_counter() - t0
    else:
        v, seconds = vectors
        if tuple(v.shape[:2]) != (L, len(texts)):
            raise LeapError(
                f"shared layer vectors of shape {tuple(v.shape)} do not fit {dataset.name} on a {L}-layer model "
                f"({len(texts)} texts); delete the vectors file and rerun"
            )
    ev = model.embed_vectors(v)
    test_rows = np.arange(len(qids))
    dev_rows = np.arange(len(qids), len(qids) + len(dev_qids))
    drows = np.arange(len(qids) + len(dev_qids), len(texts))
    args = (exit, k_values, thetas, pabee)
    test = _retrieval_split(v, ev, test_rows, drows, qids, dids, dataset.qrels, *args)
    dev = _retrieval_split(v, ev, dev_rows, drows, dev_qids, dids, dataset.dev_qrels, *args) if dev_qids else None
    raw = v.float().numpy()
    ndcg_test = frontier.retrieval_ndcg(test_rows, drows, qids, dids, dataset.qrels, k=10)
    ndcg_dev = frontier.retrieval_ndcg(dev_rows, drows, dev_qids, dids, dataset.dev_qrels, k=10) if dev else None
    return {
        "dataset": dataset.name,
        "synthetic": dataset.synthetic,
        "docs": len(dids),
        "ignore_identical_ids": True,
        "num_layers": L,
        "exit_rule": exit.to_dict(),
        "layer_maps": model.layer_maps is not None,
        "encode_seconds": seconds,
        **test,
        "dev": dev,
        "layer_mixing": mixing_record(raw, ndcg_test, raw if dev else None, ndcg_dev),
    }


# -- file-level entry points (the workflow's adapters call these) -----------------------------
def run_pairs(
    model: str,
    pairs_path: str,
    out_json: str,
    exit: dict,
    batch_size: int = 64,
    threads: int | None = None,
    device: str | None = None,
    engine: str = "torch",
) -> dict:
    from leap.workflow.records import write_record

    setup_threads(threads)
    res = evaluate_pairs(
        load_model(str(model), device, engine),
        pd.read_parquet(pairs_path),
        ExitConfig.from_dict(exit),
        batch_size=batch_size,
    )
    write_record(out_json, res)
    return res


def run_stsb(
    model: str,
    pairs_path: str,
    out_json: str,
    layers_json: str | None,
    exit: dict,
    batch_size: int = 64,
    max_sentences: int = 2000,
    threads: int | None = None,
    device: str | None = None,
    engine: str = "torch",
) -> dict:
    """STS-B (:func:`evaluate_pairs`) and, with ``layers_json``, the layer analyses on the
    first ``max_sentences`` unique test sentences from the same full pass (one model load)."""
    from leap.workflow.records import write_record

    setup_threads(threads)
    m = load_model(str(model), device, engine)
    cfg = ExitConfig.from_dict(exit)
    vectors: dict = {}
    res = evaluate_pairs(m, pd.read_parquet(pairs_path), cfg, batch_size=batch_size, vectors_out=vectors)
    write_record(out_json, res)
    if layers_json:
        sents, v = vectors.get("test") or next(iter(vectors.values()))
        n = min(max_sentences, len(sents))
        write_record(layers_json, layer_analysis(m, sents[:n], cfg, layer_vectors=v[:, :n]))
    return res


def run_beir(
    model: str,
    folder: str,
    out_json: str,
    exit: dict,
    batch_size: int = 64,
    max_seq_length: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    engine: str = "torch",
    vectors: str | None = None,
) -> dict:
    """BEIR evaluation of ``model`` on the set in ``folder``; ``max_seq_length`` caps every
    retrieval text's tokens (below the model's own cap only), recorded in the output;
    ``vectors``: the layer vectors of that pass, shared with another evaluation of the same
    checkpoint (:mod:`leap.workflow.layer_vectors`)."""
    from leap.workflow.data import RetrievalSet
    from leap.workflow.records import write_record

    setup_threads(threads)
    m = load_model(str(model), device, engine)
    if max_seq_length is not None and max_seq_length < m.max_seq_length:
        m.max_seq_length = max_seq_length
    dataset = RetrievalSet.load(folder)
    shared = None
    if vectors:
        from leap.workflow.layer_vectors import read_layer_vectors

        shared = read_layer_vectors(vectors, dataset.pass_texts(), m.max_seq_length)
    res = evaluate_beir(m, dataset, ExitConfig.from_dict(exit), batch_size=batch_size, vectors=shared)
    res["max_seq_length"] = m.max_seq_length
    write_record(out_json, res)
    return res
