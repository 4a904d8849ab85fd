"""What the paper measures on a trained model; each function returns one JSON-ready dict
(written to ``results/{experiment}/{variant}/seed{seed}/eval/<name>.json``).

- :func:`evaluate_stsb`: STS-B (Spearman x 100 is *not* used: values are in [-1, 1] as the
  paper's 0.760) on exited embeddings, each sentence with the embedding of its own exit
  layer; full-depth score beside it; every layer's score; a theta sweep (Table 5, Fig. 3)
  and PABEE (Table 10) from the same full pass. The same function scores QQP (``qqp.json``):
  gold is is_duplicate (0/1), so beside Spearman it reports the average precision of the
  cosine (``ap_exit``, ``ap_full``; sklearn), MTEB's pair-classification measure.
- :func:`layer_analysis`: similarity to final, inter-layer stability, cumulative exit,
  NN@10 and its failure rate, contraction ratios, final-aligned displacement, and the
  anisotropy (mean cosine of unrelated sentences) per layer (Tables 3, 4, 9, 13; Figs 1, 2, 4, 5).
- :func:`evaluate_beir`: exact cosine search through beir's ``DenseRetrievalExactSearch``
  with the early-exit encoder; NDCG@1/3/5/10 full and early exit; exit distributions of
  corpus and queries (Tables 6, 15, 16). beir's evaluator is called with
  ``ignore_identical_ids=True`` (its default): a document whose id equals the query id is
  dropped from the ranking, which matters for ArguAna, whose queries are corpus documents.
- :func:`evaluate_exit_heads`: DeeBERT-style off-ramps on the baseline student (SPEC).
- :func:`seed_summary`: mean and 95% bootstrap CI over seeds.

All exit decisions come from :func:`leap.early_exit.simulate_exit` on one full pass; the
encoder's fast path is proven equal to it in the tests, so sweeps need no re-encoding.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from leap import metrics
from leap.early_exit import EarlyExitEncoder, ExitConfig, simulate_exit
from leap.errors import LeapError

THETAS = (0.80, 0.85, 0.90, 0.93, 0.95, 0.97, 0.99)


def load_encoder(model: str, exit: ExitConfig | None = None, device: str | None = None) -> EarlyExitEncoder:
    from leap.models import resolve_model_ref

    return EarlyExitEncoder.from_pretrained(resolve_model_ref(model), exit=exit or ExitConfig(strategy="none"),
                                            device=device or "cpu")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (scipy)."""
    if len(a) < 2:
        raise LeapError("Spearman needs at least two pairs")
    return float(spearmanr(a, b).statistic)


def _pair_cos(emb: np.ndarray, i1: np.ndarray, i2: np.ndarray) -> np.ndarray:
    a, b = emb[i1], emb[i2]
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def _exit_summary(layers: np.ndarray, n_layers: int) -> dict:
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


def evaluate_stsb(
    encoder: EarlyExitEncoder,
    pairs: pd.DataFrame,
    exit: ExitConfig,
    splits: Sequence[str] = ("dev", "test"),
    thetas: Sequence[float] = THETAS,
    batch_size: int = 64,
) -> dict:
    """A scored pair set (STS-B, QQP) on exited and full embeddings, per split.
    ``pairs``: ``split, sentence1, sentence2, score``."""
    out: dict[str, Any] = {"exit": asdict(exit), "num_layers": encoder.num_layers, "splits": {}}
    L = encoder.num_layers
    for split in splits:
        df = pairs[pairs["split"] == split]
        if df.empty:
            continue
        sents, i1, i2 = pair_index(df)
        t0 = time.perf_counter()
        v = encoder.layer_embeddings(sents, batch_size=batch_size)  # [L, N, d]
        enc_s = time.perf_counter() - t0
        gold = df["score"].to_numpy(dtype=float)
        vn = F.normalize(v.float(), dim=-1).numpy()
        per_layer = [spearman(_pair_cos(vn[l], i1, i2), gold) for l in range(L)]
        emb, layers = simulate_exit(v, exit)
        cos_exit = _pair_cos(emb, i1, i2)  # [pairs]
        pair_layers = np.concatenate([layers[i1], layers[i2]])
        res = {
            "n_pairs": int(len(df)),
            "n_sentences": len(sents),
            "encode_seconds": enc_s,
            "spearman_exit": spearman(cos_exit, gold),
            "spearman_full": per_layer[-1],
            "spearman_per_layer": per_layer,
            **_exit_summary(layers, L),
            "pair_exit_rate": metrics.exit_rate(pair_layers, L),
        }
        if set(np.unique(gold)) <= {0.0, 1.0} and len(np.unique(gold)) == 2:  # duplicate labels (QQP)
            from sklearn.metrics import average_precision_score

            res["ap_exit"] = float(average_precision_score(gold, cos_exit))
            res["ap_full"] = float(average_precision_score(gold, _pair_cos(vn[-1], i1, i2)))
        sweep = []
        for th in thetas:
            e, ly = simulate_exit(v, replace(exit, strategy="convergence", theta=float(th)))
            sweep.append({"theta": float(th), "spearman": spearman(_pair_cos(e, i1, i2), gold), **_exit_summary(ly, L)})
        res["theta_sweep"] = sweep
        pab = replace(exit, strategy="pabee")
        e, ly = simulate_exit(v, pab)
        res["pabee"] = {"pabee_theta": pab.pabee_theta, "pabee_patience": pab.pabee_patience,
                        "spearman": spearman(_pair_cos(e, i1, i2), gold), **_exit_summary(ly, L)}
        out["splits"][split] = res
    if not out["splits"]:
        raise LeapError(f"no STS-B pairs for splits {list(splits)}")
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


def layer_analysis(encoder: EarlyExitEncoder, sentences: Sequence[str], exit: ExitConfig, k: int = 10,
                   batch_size: int = 64) -> dict:
    """Every per-layer analysis of the paper on ``sentences`` (one full pass)."""
    sents = list(dict.fromkeys(sentences))
    if len(sents) <= k:
        raise LeapError(f"layer analysis needs more than k={k} distinct sentences, got {len(sents)}")
    v = encoder.layer_embeddings(sents, batch_size=batch_size).numpy()
    L = v.shape[0]
    _, layers = simulate_exit(v, exit)
    nn, fail = metrics.nn_at_k_per_layer(v, k=k)
    stab = metrics.inter_layer_stability(v)
    return {
        "n_sentences": len(sents),
        "num_layers": L,
        "exit": asdict(exit),
        "similarity_to_final": metrics.similarity_to_final(v).tolist(),
        "stability": [None if np.isnan(x) else float(x) for x in stab],
        "stability_mean": float(np.nanmean(stab)),
        "contraction_ratios": [None if np.isnan(x) else float(x) for x in metrics.contraction_ratios(v)],
        "median_contraction": metrics.median_contraction(v),
        "final_aligned_displacement": [None if np.isnan(x) else float(x) for x in metrics.final_aligned_displacement(v)],
        "nn_at_10": nn.tolist(),
        "nn_failure_rate": fail.tolist(),
        "anisotropy": anisotropy(v),
        **_exit_summary(layers, L),
    }


def evaluate_beir(encoder: EarlyExitEncoder, dataset: Any, exit: ExitConfig, batch_size: int = 64,
                  k_values: Sequence[int] = (1, 3, 5, 10)) -> dict:
    """NDCG@k full and early exit on one BEIR set (:class:`leap.data.RetrievalSet`)."""
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    out: dict[str, Any] = {"dataset": dataset.name, "synthetic": dataset.synthetic, "docs": len(dataset.corpus),
                           "queries": len(dataset.queries), "ignore_identical_ids": True}
    for mode, cfg in (("full", ExitConfig(strategy="none")), ("exit", exit)):
        encoder.exit = cfg
        search = DenseRetrievalExactSearch(encoder, batch_size=batch_size, corpus_chunk_size=50_000)
        retriever = EvaluateRetrieval(search, score_function="cos_sim", k_values=list(k_values))
        t0 = time.perf_counter()
        results = retriever.retrieve(dataset.corpus, dataset.queries)
        seconds = time.perf_counter() - t0
        ndcg, _map, recall, _p = retriever.evaluate(dataset.qrels, results, list(k_values), ignore_identical_ids=True)
        res = {"seconds": seconds, **{k: float(v) for k, v in ndcg.items()},
               **{k: float(v) for k, v in recall.items()}}
        if mode == "exit":
            L = encoder.num_layers
            res["corpus_exit"] = _exit_summary(np.asarray(encoder.last_corpus_exit_layers), L)
            res["query_exit"] = _exit_summary(np.asarray(encoder.last_query_exit_layers), L)
        out[mode] = res
    return out


def seed_summary(values: Sequence[float], n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean over seeds and a percentile bootstrap CI of the mean (SPEC: 95%)."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(1)
    a = (1 - level) / 2
    return {"mean": float(x.mean()), "ci_low": float(np.quantile(boots, a)), "ci_high": float(np.quantile(boots, 1 - a)),
            "n": int(x.size), "values": x.tolist()}


# -- DeeBERT-style learned exit heads (SPEC "Comparison exits and models") --------------------
def _pair_features(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.cat([u, v, (u - v).abs()], dim=-1)


def train_exit_heads(encoder: EarlyExitEncoder, nli: pd.DataFrame, epochs: int = 5, lr: float = 1e-3,
                     batch_size: int = 64, seed: int = 0) -> list[torch.nn.Linear]:
    """One linear off-ramp per layer on ``[u, v, |u-v|]`` of the pooled layer vectors,
    3-way NLI labels, backbone frozen (DeeBERT's second stage)."""
    sents, i1, i2 = pair_index(nli)
    v = encoder.layer_embeddings(sents, batch_size=batch_size)  # [L, N, d]
    y = torch.as_tensor(nli["label"].to_numpy(dtype=np.int64).copy())
    torch.manual_seed(seed)
    heads = []
    for l in range(v.shape[0]):
        x = _pair_features(v[l][i1], v[l][i2])
        head = torch.nn.Linear(x.shape[-1], 3)
        opt = torch.optim.Adam(head.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed + l)
        for _ in range(epochs):
            for b in torch.randperm(len(y), generator=g).split(batch_size):
                opt.zero_grad()
                F.cross_entropy(head(x[b]), y[b]).backward()
                opt.step()
        heads.append(head.eval())
    return heads


def head_entropies(heads: list[torch.nn.Linear], v: torch.Tensor, i1: np.ndarray, i2: np.ndarray) -> np.ndarray:
    """``[L, P]`` off-ramp entropy per layer for each pair."""
    with torch.no_grad():
        out = []
        for l, head in enumerate(heads):
            p = F.softmax(head(_pair_features(v[l][i1], v[l][i2])), dim=-1)
            out.append(-(p * p.clamp_min(1e-12).log()).sum(-1))
    return torch.stack(out).numpy()


def entropy_exit(ent: np.ndarray, s: float) -> np.ndarray:
    """``[P]`` 1-based exit layer: first layer with entropy below ``s`` (``L`` if none)."""
    below = ent < s
    return np.where(below.any(0), below.argmax(0) + 1, ent.shape[0])


def evaluate_exit_heads(encoder: EarlyExitEncoder, nli: pd.DataFrame, pairs: pd.DataFrame, target_mean_layer: float | None,
                        seed: int = 0, batch_size: int = 64, epochs: int = 5) -> dict:
    """DeeBERT-style exit on STS-B pairs: a pair exits at the first layer whose off-ramp
    entropy is below ``S``; both sentences use that layer's pooled vectors. ``S`` is
    calibrated on dev to give ``target_mean_layer`` (LEAP's E[l] at theta 0.95)."""
    heads = train_exit_heads(encoder, nli, epochs=epochs, seed=seed, batch_size=batch_size)
    L = encoder.num_layers
    data = {}
    for split in ("dev", "test"):
        df = pairs[pairs["split"] == split]
        sents, i1, i2 = pair_index(df)
        v = encoder.layer_embeddings(sents, batch_size=batch_size)
        data[split] = (df["score"].to_numpy(float), F.normalize(v.float(), dim=-1).numpy(), head_entropies(heads, v, i1, i2), i1, i2)
    gold, vn, ent, i1, i2 = data["dev"]
    grid = np.unique(np.quantile(ent, np.linspace(0, 1, 201)))
    target = target_mean_layer if target_mean_layer is not None else (L + 1) / 2
    s_best = min(grid, key=lambda s: abs(entropy_exit(ent, s).mean() - target))
    res: dict[str, Any] = {"entropy_threshold": float(s_best), "target_mean_layer": target, "num_layers": L}
    for split, (gold, vn, ent, i1, i2) in data.items():
        ly = entropy_exit(ent, s_best)
        rows = np.arange(len(ly))
        cos = (vn[ly - 1, i1[rows]] * vn[ly - 1, i2[rows]]).sum(-1)
        res[split] = {"spearman_exit": spearman(cos, gold), **_exit_summary(ly, L)}
    return res


# -- file-level entry points (the workflow's adapters call these) -----------------------------
def _setup(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def run_stsb(model: str, pairs_path: str, out_json: str, exit: dict, batch_size: int = 64, threads: int | None = None) -> dict:
    from leap.files import write_json

    _setup(threads)
    res = evaluate_stsb(load_encoder(str(model)), pd.read_parquet(pairs_path), ExitConfig(**exit), batch_size=batch_size)
    write_json(out_json, res)
    return res


def run_layers(model: str, pairs_path: str, out_json: str, exit: dict, batch_size: int = 64,
               max_sentences: int = 2000, threads: int | None = None) -> dict:
    """Layer analyses on the STS-B test sentences (first ``max_sentences`` unique ones)."""
    from leap.files import write_json

    _setup(threads)
    df = pd.read_parquet(pairs_path)
    test = df[df["split"] == "test"] if (df["split"] == "test").any() else df
    sents = list(dict.fromkeys(test["sentence1"].tolist() + test["sentence2"].tolist()))[:max_sentences]
    res = layer_analysis(load_encoder(str(model)), sents, ExitConfig(**exit), batch_size=batch_size)
    write_json(out_json, res)
    return res


def run_beir(model: str, folder: str, out_json: str, exit: dict, batch_size: int = 64, threads: int | None = None) -> dict:
    from leap.data import RetrievalSet
    from leap.files import write_json

    _setup(threads)
    res = evaluate_beir(load_encoder(str(model)), RetrievalSet.load(folder), ExitConfig(**exit), batch_size=batch_size)
    write_json(out_json, res)
    return res


def run_exit_heads(model: str, nli_path: str, pairs_path: str, leap_stsb_json: str, out_json: str, seed: int = 0,
                   epochs: int = 5, batch_size: int = 64, threads: int | None = None) -> dict:
    """DeeBERT heads on the baseline; the entropy threshold matches LEAP's E[l] on dev (same seed)."""
    import json

    from leap.files import write_json

    _setup(threads)
    leap = json.loads(open(leap_stsb_json, encoding="utf-8").read())
    target = (leap["splits"].get("dev") or next(iter(leap["splits"].values())))["expected_exit_layer"]
    enc = load_encoder(str(model))
    nli = pd.read_parquet(nli_path)
    res = evaluate_exit_heads(enc, nli, pd.read_parquet(pairs_path), target, seed=seed, batch_size=batch_size, epochs=epochs)
    res["heads_epochs"] = epochs
    write_json(out_json, res)
    return res
