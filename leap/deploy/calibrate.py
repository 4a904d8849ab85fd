"""Calibrating the exit rule on the user's own sentences (paper sec 5.3, App. G).

:func:`calibrate` sweeps theta (and ``l_min``, patience) on a sample and picks the fastest
rule that meets a quality budget against full inference (:class:`Budget`): NN@10 overlap,
mean cosine to the full embedding and, with scored pairs, the Spearman drop.
:func:`calibrate_folder` writes the chosen rule and a calibration record into the model
folder (``leap_exit.json``), which :class:`leap.deploy.monitor.ExitMonitor` reads as its
reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leap.core import metrics
from leap.core.early_exit import simulate_exit
from leap.core.exit_config import EXIT_CONFIG_FILE, ExitConfig
from leap.core.quiet import third_party_to_log
from leap.errors import LeapError

DEFAULT_THETAS = (0.80, 0.83, 0.86, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


@dataclass(frozen=True)
class Budget:
    """How close to full inference an exit rule must stay (``None``: not checked; at least one
    criterion must be set, and only the ones set are checked).

    Attributes:
        nn10: minimum mean overlap of each sentence's 10 nearest neighbours under the exit
            embeddings with those under full-depth embeddings (paper B.5).
        mean_cosine: minimum mean cosine between a sentence's exit and full embeddings.
        spearman_drop: maximum drop of Spearman on scored pairs (exit vs full).
    """

    nn10: float | None = None
    mean_cosine: float | None = None
    spearman_drop: float | None = None

    def __post_init__(self) -> None:
        if self.nn10 is None and self.mean_cosine is None and self.spearman_drop is None:
            raise LeapError("a budget needs at least one of nn10, mean_cosine, spearman_drop")
        for name in ("nn10", "mean_cosine"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 1:
                raise LeapError(f"budget {name} must lie in [0, 1], got {v}")
        if self.spearman_drop is not None and self.spearman_drop < 0:
            raise LeapError(f"budget spearman_drop must be >= 0, got {self.spearman_drop}")

    def describe(self) -> str:
        """Every active criterion, e.g. ``NN@10 >= 0.95, Spearman drop <= 0.01``."""
        parts = []
        if self.nn10 is not None:
            parts.append(f"NN@10 >= {self.nn10:g}")
        if self.mean_cosine is not None:
            parts.append(f"mean cosine >= {self.mean_cosine:g}")
        if self.spearman_drop is not None:
            parts.append(f"Spearman drop <= {self.spearman_drop:g}")
        return ", ".join(parts)

    def met(self, row: dict) -> bool:
        return (
            (self.nn10 is None or row["nn10"] >= self.nn10)
            and (self.mean_cosine is None or row["mean_cosine"] >= self.mean_cosine)
            and (self.spearman_drop is None or row.get("spearman_drop", np.inf) <= self.spearman_drop)
        )


DEFAULT_BUDGET = Budget(nn10=metrics.DEFAULT_NN10)
"""The budget when none is named: NN@10 agreement with full inference >= 0.95 (paper B.5)."""


def per_row_agreement(emb: np.ndarray, full: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence ``[N]``: the NN@k overlap and the cosine of ``emb`` ``[N, d]`` with the
    full-depth ``full`` ``[N, d]`` (paper App. B.5)."""
    k = min(k, len(emb) - 1)
    overlaps = metrics.nn_overlap(emb, full, k) if k >= 1 else np.ones(len(emb))
    cosines = (F.normalize(torch.as_tensor(emb), dim=-1) * F.normalize(torch.as_tensor(full), dim=-1)).sum(-1)
    return overlaps, cosines.numpy()


def agreement(emb: np.ndarray, full: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(mean NN@k overlap, mean cosine) of exit embeddings against full-depth ones."""
    overlaps, cosines = per_row_agreement(emb, full, k)
    return float(overlaps.mean()), float(cosines.mean())


def calibrate(
    model: Any,
    sentences: Sequence[str],
    budget: Budget = DEFAULT_BUDGET,
    thetas: Sequence[float] = DEFAULT_THETAS,
    min_layers: Sequence[int] | None = None,
    patiences: Sequence[int] = (1,),
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    batch_size: int = 64,
) -> dict:
    """The fastest exit rule (lowest E[l]) on ``sentences`` that meets ``budget``.

    Args:
        model: :class:`leap.serving.model.ExitSentenceTransformer`.
        sentences: the user's own sentences (held out, in domain).
        min_layers: the ``l_min`` values tried (default: the model's own and one above).
        pairs: ``(i1, i2, gold)`` row indices into ``sentences`` and scores, for the
            Spearman budget.

    Returns:
        ``{"chosen": ExitConfig | None, "sweep": [rows], "budget": ..., "n": ...}``; each row has
        ``strategy, theta, patience, min_layer, exit_rate, expected_exit_layer,
        layer_reduction, nn10, mean_cosine`` (and ``spearman``, ``spearman_drop``) and
        ``meets_budget``. ``chosen`` is ``None`` when no rule meets the budget (full depth then).
    """
    sents = [s for s in sentences if s.strip()]
    if len(sents) < 11:
        raise LeapError(f"calibration needs at least 11 non-empty sentences (NN@10), got {len(sents)}")
    L = model.num_layers
    v = model.layer_embeddings(sents, batch_size=batch_size)
    ev = model.embed_vectors(v)
    full = F.normalize(ev[-1].float(), dim=-1).numpy()
    base = model.exit_config
    lmins = list(min_layers) if min_layers else sorted({base.min_layer, min(L - 1, base.min_layer + 1)})
    full_sp = None
    if pairs is not None:
        from scipy.stats import spearmanr

        i1, i2, gold = pairs
        full_sp = float(spearmanr((full[i1] * full[i2]).sum(-1), gold).statistic)
    rows = []
    for lmin in lmins:
        for k in patiences:
            for th in thetas:
                cfg = ExitConfig(strategy="convergence", theta=float(th), patience=int(k), min_layer=int(lmin))
                emb, layers = simulate_exit(v, cfg, embed_vectors=ev)
                nn, cos = agreement(emb, full)
                row = {
                    **cfg.to_dict(),
                    "exit_rate": metrics.exit_rate(layers, L),
                    "expected_exit_layer": metrics.expected_exit_layer(layers),
                    "layer_reduction": metrics.layer_reduction(layers, L),
                    "nn10": nn,
                    "mean_cosine": cos,
                }
                if pairs is not None:
                    from scipy.stats import spearmanr

                    sp = float(spearmanr((emb[i1] * emb[i2]).sum(-1), gold).statistic)
                    row |= {"spearman": sp, "spearman_drop": full_sp - sp}
                row["meets_budget"] = budget.met(row)
                rows.append(row)
    ok = [r for r in rows if r["meets_budget"] and r["exit_rate"] > 0]
    best = min(ok, key=lambda r: (r["expected_exit_layer"], -r["nn10"])) if ok else None
    chosen = None
    if best is not None:
        chosen = ExitConfig.from_dict(
            {k: best[k] for k in ("strategy", "theta", "patience", "min_layer", "pabee_theta", "pabee_patience")}
        )
    return {
        "chosen": chosen,
        "sweep": rows,
        "budget": dataclasses.asdict(budget),
        "budget_text": budget.describe(),
        "n": len(sents),
        "spearman_full": full_sp,
    }


def calibration_record(result: dict, sentences: Sequence[str], source: str) -> dict:
    """What is saved beside the chosen rule: data hash and size, budget, achieved figures, date."""
    sha = hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()
    chosen = result["chosen"]
    row = next(
        (
            r
            for r in result["sweep"]
            if chosen is not None
            and r["theta"] == chosen.theta
            and r["min_layer"] == chosen.min_layer
            and r["patience"] == chosen.patience
        ),
        None,
    )
    return {
        "calibration": {
            "data": source,
            "data_sha256": sha,
            "n_sentences": result["n"],
            "budget": result["budget"],
            "achieved": row,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    }


def calibrate_folder(
    folder: str | os.PathLike,
    sentences: Sequence[str],
    budget: Budget = DEFAULT_BUDGET,
    source: str = "",
    pairs: tuple | None = None,
    **kwargs: Any,
) -> dict:
    """Calibrate the exit-enabled model in ``folder`` and write the chosen rule and the
    calibration record into its ``leap_exit.json`` (nothing is written when no rule meets
    the budget: the result says so). The file is checked before anything is measured."""
    from leap.files import check_writable
    from leap.serving.folder import ModelFolder
    from leap.serving.model import ExitSentenceTransformer

    info = ModelFolder.read(folder)
    path = info.require_local("calibration")
    check_writable(path / EXIT_CONFIG_FILE)
    with third_party_to_log(logging.getLogger(__name__)):
        model = ExitSentenceTransformer(info, device="cpu")
        result = calibrate(model, sentences, budget, pairs=pairs, **kwargs)
    if result["chosen"] is not None:
        record = calibration_record(result, sentences, source)
        _, layers = model.encode_with_exit_layers([s for s in sentences if s.strip()], exit=result["chosen"])
        record["calibration"]["exit_distribution"] = metrics.exit_distribution(layers, model.num_layers).tolist()
        result["chosen"].save(path, extra=record)
        result["record"] = record["calibration"]
    return result
