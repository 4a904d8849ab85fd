"""The exit diagnostic and deployment checklist (paper sec 5.2 and 5.3).

Three diagnostics decide whether an encoder is exit-compatible:

1. flat similarity curve: ``cos(e_l, e_L)`` stays below 0.7 for every layer
   ``l_min..L-1``;
2. zero exit rate at ``theta = 0.95`` (with ``l_min``);
3. monitoring overhead above 15% while fewer than 10% of samples exit.

Any one makes the verdict ``incompatible``. The checklist (sec 5.3) adds: similarity to
final >= 0.94 at the target exit layer, NN@10 >= 0.80 there, exit rate > 50%. A model with
per-layer maps returns the *mapped* vector of its exit layer, so the checklist judges what
is served (``as_served``: similarity and NN@10 of the mapped vectors); the raw layer
vectors are reported beside it (the paper's convergence analysis, what the rule reads). The target
layer is the rounded E[l] of the samples that exit; when none exits, every check fails
(a checklist cannot pass on a model that never exits), and each check reports the exit
rate and E[l] beside its value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from leap.core import metrics
from leap.core.exit_config import ExitConfig
from leap.deploy.bench import BenchConfig, bench


@dataclass(frozen=True)
class DiagnosticThresholds:
    """The paper's thresholds (sec 5.2, 5.3)."""

    flat_similarity: float = 0.7
    overhead: float = 0.15
    overhead_exit_rate: float = 0.10
    checklist_similarity: float = 0.94
    checklist_nn10: float = 0.80
    checklist_exit_rate: float = 0.50


def _clean(x: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in np.asarray(x, dtype=float)]


def checklist(
    sim: np.ndarray,
    nn10: np.ndarray,
    exit_layers: np.ndarray,
    n_layers: int,
    t: DiagnosticThresholds = DiagnosticThresholds(),
) -> dict:
    """The sec 5.3 checklist at the target exit layer (rounded E[l] of the exiting samples).

    With no exiting sample there is no target layer, and no check passes.
    """
    rate = metrics.exit_rate(exit_layers, n_layers)
    e_l = metrics.expected_exit_layer(exit_layers)
    exited = exit_layers[exit_layers < n_layers]
    context = {"exit_rate": rate, "expected_exit_layer": e_l}
    if exited.size == 0:
        out: dict[str, Any] = {"target_layer": None}
        for k, thr in (
            ("similarity_to_final", t.checklist_similarity),
            ("nn_at_10", t.checklist_nn10),
            ("exit_rate", t.checklist_exit_rate),
        ):
            out[k] = {
                "value": rate if k == "exit_rate" else None,
                "threshold": thr,
                "pass": False,
                "why": "no sample exits",
                **context,
            }
        out["all_pass"] = False
        return out
    target = int(np.clip(round(float(exited.mean())), 1, n_layers - 1))
    nn_v = None if np.isnan(nn10[target - 1]) else float(nn10[target - 1])
    checks = {
        "similarity_to_final": (
            float(sim[target - 1]),
            t.checklist_similarity,
            float(sim[target - 1]) >= t.checklist_similarity,
        ),
        "nn_at_10": (nn_v, t.checklist_nn10, nn_v is not None and nn_v >= t.checklist_nn10),
        "exit_rate": (rate, t.checklist_exit_rate, rate > t.checklist_exit_rate),
    }
    out = {"target_layer": target}
    for k, (v, thr, ok) in checks.items():
        out[k] = {"value": v, "threshold": thr, "pass": bool(ok), **context}
    out["all_pass"] = all(c[2] for c in checks.values())
    return out


def incompatibility_reasons(
    sim: np.ndarray, rate: float, overhead: float, cfg: ExitConfig, t: DiagnosticThresholds
) -> list[str]:
    """The sec 5.2 diagnostics that fire (empty: compatible): a flat similarity curve over
    layers ``l_min..L-1``, a zero exit rate, monitoring overhead without exits."""
    n_layers = len(sim)
    reasons = []
    window = sim[cfg.min_layer - 1 : n_layers - 1]  # layers l_min..L-1
    if window.size and float(window.max()) < t.flat_similarity:
        reasons.append(
            f"flat similarity curve: cos(e_l, e_L) < {t.flat_similarity} for every layer "
            f"{cfg.min_layer}..{n_layers - 1} (max {window.max():.3f})"
        )
    if rate == 0.0:
        reasons.append(f"zero exit rate at theta {cfg.theta}, l_min {cfg.min_layer}")
    if overhead > t.overhead and rate < t.overhead_exit_rate:
        reasons.append(
            f"monitoring overhead {overhead:.1%} > {t.overhead:.0%} with exit rate {rate:.1%} "
            f"< {t.overhead_exit_rate:.0%}"
        )
    return reasons


def diagnose(
    model: Any,
    sentences: list[str],
    exit: ExitConfig | None = None,
    overhead_iters: int = 30,
    batch_size: int = 32,
    thresholds: DiagnosticThresholds = DiagnosticThresholds(),
) -> dict:
    """Run the sec 5.2 diagnostic and the sec 5.3 checklist on ``sentences``.

    ``model``: a :class:`leap.serving.model.ExitSentenceTransformer`. Returns the JSON-ready
    dict of ``leap diagnose --json``: ``layers,
    similarity_to_final, stability, exit_rate, cumulative_exit, expected_exit_layer,
    layer_reduction, monitoring_overhead, verdict, checklist``, plus ``nn_at_10``,
    ``nn10_failure``, ``reasons``, the exit rule used, and ``as_served`` (similarity to final
    and NN@10 of the vectors the model returns, maps applied; the checklist reads these).
    """
    cfg = model.exit_module.resolve(exit)
    n_layers = model.num_layers
    raw = model.layer_embeddings(sentences, batch_size=batch_size)  # [L, N, d] what the rule reads
    lv = raw.numpy()
    sv = model.embed_vectors(raw).numpy()  # what a row stopped at each layer returns (maps applied)
    sim = metrics.similarity_to_final(lv)
    sim_served = metrics.similarity_to_final(sv)
    stab = metrics.inter_layer_stability(lv)
    _, exit_layers = model.encode_with_exit_layers(sentences, batch_size=batch_size, exit=cfg)
    rate = metrics.exit_rate(exit_layers, n_layers)
    e_l = metrics.expected_exit_layer(exit_layers)
    if len(sentences) > 10:
        nn10, nn_fail = metrics.nn_at_k_per_layer(lv, k=10)
        nn10_served, nn_fail_served = metrics.nn_at_k_per_layer(sv, k=10)
    else:
        nn10 = nn_fail = nn10_served = nn_fail_served = np.full(n_layers, np.nan)
    timing = bench(
        model,
        sentences,
        BenchConfig(
            batch_sizes=(1,), warmup=max(3, overhead_iters // 10), iters=overhead_iters, rounds=min(5, overhead_iters)
        ),
        exit=cfg,
    )
    overhead = timing["rows"][0]["monitoring_overhead"]

    reasons = incompatibility_reasons(sim, rate, overhead, cfg, thresholds)
    return {
        "model": getattr(model, "source", None),
        "num_sentences": len(sentences),
        "exit": cfg.to_dict(),
        "layers": list(range(1, n_layers + 1)),
        "similarity_to_final": _clean(sim),
        "stability": _clean(stab),
        "mean_stability": float(np.nanmean(stab)) if n_layers > 1 else None,
        "nn_at_10": _clean(nn10),
        "nn10_failure": _clean(nn_fail),
        "exit_rate": rate,
        "cumulative_exit": _clean(metrics.cumulative_exit(exit_layers, n_layers)),
        "expected_exit_layer": e_l,
        "layer_reduction": metrics.layer_reduction(exit_layers, n_layers),
        "monitoring_overhead": overhead,
        "verdict": "incompatible" if reasons else "compatible",
        "reasons": reasons,
        "layer_maps": model.layer_maps is not None,
        "as_served": {
            "similarity_to_final": _clean(sim_served),
            "nn_at_10": _clean(nn10_served),
            "nn10_failure": _clean(nn_fail_served),
        },
        "checklist": checklist(sim_served, nn10_served, exit_layers, n_layers, thresholds),
        "device": timing["device"],
        "threads": timing["threads"],
    }
