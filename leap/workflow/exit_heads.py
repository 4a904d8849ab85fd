"""DeeBERT-style learned exit heads on the baseline student (paper Table 2's comparison).

One linear off-ramp per layer, trained on NLI pair labels (3 classes, features
``[u, v, |u-v|]`` of the pooled layer vectors, scikit-learn's logistic regression); a pair
exits at the first layer at or above ``l_min`` whose off-ramp entropy is below ``S``, with
``S`` matched on dev to a reference variant's mean exit layer. Heads read a pair, so their
exit decision is per pair (our reading, named so in the report).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from leap.core.exit_config import ExitConfig
from leap.errors import LeapError
from leap.workflow import frontier
from leap.workflow.evaluate import (
    exit_summary,
    load_model,
    pair_index,
    setup_threads,
    spearman,
)

log = logging.getLogger(__name__)


def _pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.concatenate([u, v, np.abs(u - v)], axis=-1)


def train_exit_heads(
    layer_vectors: torch.Tensor, i1: np.ndarray, i2: np.ndarray, labels: np.ndarray, seed: int = 0, max_iter: int = 200
) -> list[Any]:
    """One linear off-ramp per layer on ``[u, v, |u-v|]`` of the pooled layer vectors, 3-way
    NLI labels, backbone frozen (DeeBERT's second stage): scikit-learn's multinomial
    ``LogisticRegression`` on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    v = layer_vectors.numpy()
    heads = []
    for l in range(v.shape[0]):
        x = _pair_features(v[l][i1], v[l][i2])
        heads.append(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed)).fit(x, labels)
        )
    return heads


def head_entropies(heads: list[Any], layer_vectors: torch.Tensor, i1: np.ndarray, i2: np.ndarray) -> np.ndarray:
    """``[L, P]`` off-ramp entropy per layer for each pair."""
    v = layer_vectors.numpy()
    out = []
    for l, head in enumerate(heads):
        p = head.predict_proba(_pair_features(v[l][i1], v[l][i2]))
        out.append(-(p * np.log(np.clip(p, 1e-12, None))).sum(-1))
    return np.stack(out)


def entropy_exit(ent: np.ndarray, s: float, min_layer: int = 1) -> np.ndarray:
    """``[P]`` 1-based exit layer: first layer ``>= min_layer`` with entropy below ``s`` (``L`` if none)."""
    below = ent < s
    below[: min_layer - 1] = False
    return np.where(below.any(0), below.argmax(0) + 1, ent.shape[0])


def evaluate_exit_heads(
    model: Any,
    nli: pd.DataFrame,
    pairs: pd.DataFrame,
    target_mean_layer: float | None,
    min_layer: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    n_thresholds: int = 12,
) -> dict:
    """DeeBERT-style exit on STS-B pairs.

    An off-ramp reads a pair, so the decision is per pair: a pair exits at the first layer
    ``>= l_min`` whose off-ramp entropy is below ``S``, and both sentences use that layer's
    vectors (what the model serves there). ``S`` is chosen on dev to give
    ``target_mean_layer`` (default: half way between ``l_min`` and ``L``); a sweep of ``S``
    (dev quantiles) is reported on the frontier against the model's truncation.
    """
    L = model.num_layers
    l_min = min_layer or ExitConfig().resolve(L).min_layer
    if len(nli) < 3 or nli["label"].nunique() < 2:
        raise LeapError(
            f"the DeeBERT off-ramps need labelled NLI pairs of at least two classes; got {len(nli)} pairs "
            "(every NLI sentence that is also an evaluation sentence is removed: use another nli source)"
        )
    nsents, n1, n2 = pair_index(nli)
    heads = train_exit_heads(
        model.layer_embeddings(nsents, batch_size=batch_size), n1, n2, nli["label"].to_numpy(dtype=np.int64), seed=seed
    )
    data = {}
    for split in ("dev", "test"):
        df = pairs[pairs["split"] == split]
        sents, i1, i2 = pair_index(df)
        v = model.layer_embeddings(sents, batch_size=batch_size)
        served = F.normalize(model.embed_vectors(v).float(), dim=-1).numpy()
        data[split] = (df["score"].to_numpy(float), served, head_entropies(heads, v, i1, i2), i1, i2)
    target = target_mean_layer if target_mean_layer is not None and target_mean_layer < L else (l_min + L) / 2
    ent_dev = data["dev"][2]
    grid = np.unique(np.quantile(ent_dev[l_min - 1 :], np.linspace(0, 1, 201)))
    s_best = float(min(grid, key=lambda s: abs(entropy_exit(ent_dev, s, l_min).mean() - target)))

    def scored(split: str, s: float) -> dict:
        gold, served, ent, i1, i2 = data[split]
        ly = entropy_exit(ent, s, l_min)  # [P]
        cos = (served[ly - 1, i1] * served[ly - 1, i2]).sum(-1)
        sent_layers = np.concatenate([ly, ly])  # both sentences of a pair leave at its layer
        return {"entropy_threshold": s, "spearman_exit": spearman(cos, gold), **exit_summary(sent_layers, L)}

    res: dict[str, Any] = {
        "entropy_threshold": s_best,
        "target_mean_layer": target,
        "num_layers": L,
        "min_layer": l_min,
        "decision": "per pair (an off-ramp reads a pair)",
    }
    for split in data:
        res[split] = scored(split, s_best)
    gold, served, _, i1, i2 = data["test"]
    quality = frontier.pair_spearman(i1, i2, gold)
    trunc = frontier.truncation_points(torch.as_tensor(served), quality)
    sweep = []
    for s in np.quantile(ent_dev[l_min - 1 :], np.linspace(0.05, 0.95, n_thresholds)):
        r = scored("test", float(s))
        p = frontier.FrontierPoint(
            "deebert", float(s), r["exit_rate"], r["expected_exit_layer"], r["layer_reduction"], r["spearman_exit"]
        )
        sweep.append({**p.to_dict(), "exit_advantage": frontier.exit_advantage(p, trunc)})
    at = res["test"]
    p_at = frontier.FrontierPoint(
        "deebert", s_best, at["exit_rate"], at["expected_exit_layer"], at["layer_reduction"], at["spearman_exit"]
    )
    res["frontier"] = {
        "truncation": [p.to_dict() for p in trunc],
        "at_config": {**p_at.to_dict(), "exit_advantage": frontier.exit_advantage(p_at, trunc)},
        "sweep": sweep,
    }
    return res


def run_exit_heads(
    model: str,
    nli_path: str,
    pairs_path: str,
    reference_json: str | None,
    out_json: str,
    min_layer: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    threads: int | None = None,
    device: str | None = None,
    engine: str = "torch",
) -> dict:
    """DeeBERT heads on the baseline; ``S`` matches the reference variant's dev E[l] (same seed)
    when that variant exits, else half way between ``l_min`` and ``L``."""

    from leap.workflow.records import write_record

    setup_threads(threads)
    target = None
    if reference_json:
        from leap.workflow.results import load_json

        ref = load_json(reference_json)
        target = (ref["splits"].get("dev") or next(iter(ref["splits"].values())))["expected_exit_layer"]
    res = evaluate_exit_heads(
        load_model(str(model), device, engine),
        pd.read_parquet(nli_path),
        pd.read_parquet(pairs_path),
        target,
        min_layer=min_layer,
        seed=seed,
        batch_size=batch_size,
    )
    res["reference"] = reference_json
    write_record(out_json, res)
    return res
