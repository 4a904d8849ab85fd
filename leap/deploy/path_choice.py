"""Which serving path to serve, with the uncertainty of what was measured.

A calibration measures each path's quality on the user's sentences and its speed in a few
timing rounds; both are estimates. Read literally, "the fastest path within the budget" trades
real quality for timing noise (a path at the edge of the budget on the calibration data is
over it on other data about half the time). So:

* **Quality with an interval** (:func:`quality_intervals`): a bootstrap over the user's
  sentences (NN@10 agreement, mean cosine: per-sentence values resampled) and over the scored
  pairs (the Spearman drop: the full-depth reference and the path scored on the same resample
  of pairs), 95% percentile intervals.
* **In budget only on the bound** (:func:`in_budget`): a path meets a criterion when the
  pessimistic end of its interval does (NN@10 and cosine: the lower end; the Spearman drop:
  the upper end).
* **Faster only beyond noise** (:func:`choose`): among the paths in budget, those whose timing
  interval (the spread of the interleaved rounds) overlaps the fastest one's are tied; of the
  tied, the one with the best quality is served, then the simplest kind (full depth, a cut,
  exit), then the faster. A path that loses quality is served over a better one only when it
  is faster by more than the timing's own interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

RESAMPLES = 200
"""Bootstrap resamples behind each quality interval."""
LEVEL = 0.95
SIMPLER = {"full": 0, "cut": 1, "exit": 2}


def percentile_interval(samples: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(samples, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return float(lo), float(hi)


def mean_interval(values: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """The interval of the mean of per-sentence ``values`` ``[N]`` (sentences resampled)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    return percentile_interval(np.asarray(values, dtype=float)[idx].mean(axis=1))


def _row_spearman(a: np.ndarray, ranked_b: np.ndarray) -> np.ndarray:
    """Spearman of every row of ``a`` ``[B, P]`` with the already ranked rows of ``ranked_b``."""
    from scipy.stats import rankdata

    ra = rankdata(a, axis=1)
    ra = ra - ra.mean(axis=1, keepdims=True)
    rb = ranked_b - ranked_b.mean(axis=1, keepdims=True)
    return (ra * rb).sum(axis=1) / np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))


class PairResamples:
    """The bootstrap resamples of scored pairs, shared by every path of one calibration: the
    gold scores' ranks and the full-depth reference's Spearman on each resample."""

    def __init__(self, gold: np.ndarray, reference: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> None:
        from scipy.stats import rankdata

        rng = np.random.default_rng(seed)
        self.idx = rng.integers(0, len(gold), size=(resamples, len(gold)))
        self.gold_ranks = rankdata(np.asarray(gold, dtype=float)[self.idx], axis=1)
        self.reference = _row_spearman(np.asarray(reference, dtype=float)[self.idx], self.gold_ranks)

    def drop_interval(self, scores: np.ndarray) -> tuple[float, float]:
        """The interval of (reference Spearman - this path's Spearman) from the path's pair
        scores ``[P]``, both on the same resamples."""
        path = _row_spearman(np.asarray(scores, dtype=float)[self.idx], self.gold_ranks)
        return percentile_interval(self.reference - path)


def quality_intervals(
    nn_overlaps: np.ndarray,
    cosines: np.ndarray,
    pair_scores: np.ndarray | None = None,
    pairs: PairResamples | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% intervals of one path's NN@10 and mean cosine (from per-sentence values) and, with
    scored pairs, of its Spearman drop."""
    out = {
        "nn10_ci": mean_interval(nn_overlaps, resamples, seed),
        "mean_cosine_ci": mean_interval(cosines, resamples, seed),
    }
    if pair_scores is not None and pairs is not None:
        out["spearman_drop_ci"] = pairs.drop_interval(pair_scores)
    return out


def in_budget(budget: Any, row: dict[str, Any]) -> bool:
    """Whether ``row`` meets every criterion of ``budget`` at the pessimistic end of its
    interval (the point estimate where a row has no interval)."""
    nn10 = (row.get("nn10_ci") or (row["nn10"],))[0]
    cosine = (row.get("mean_cosine_ci") or (row["mean_cosine"],))[0]
    drop = (row.get("spearman_drop_ci") or (row.get("spearman_drop", np.inf),))[-1]
    return budget.met({"nn10": nn10, "mean_cosine": cosine, "spearman_drop": drop})


def quality_key(path: Any) -> float:
    """Lower is better: the Spearman drop where pairs were scored, else the NN@10 shortfall."""
    return path.spearman_drop if path.spearman_drop is not None else 1.0 - path.nn10


def choose(paths: Sequence[Any], batch_size: int, noise: float = 0.03) -> Any | None:
    """The path to serve at ``batch_size`` among those that meet the budget (``meets_budget``;
    an exit rule under which no input exits never does): the paths whose timing interval
    overlaps the fastest one's are tied; of them, a path slower than another tied one beyond
    both intervals at any other measured batch size drops out; the best quality of the rest
    wins, then the simplest kind, then the faster. A path measured without an interval (a
    record from before) counts ``noise`` of its time either side."""
    ok = [p for p in paths if p.meets_budget and (p.kind != "exit" or p.exit_rate > 0)]
    if not ok:
        return None

    def span(p: Any, b: int) -> tuple[float, float]:
        ms = p.ms[b]
        return tuple(p.ms_range[b]) if b in p.ms_range else (ms * (1 - noise), ms * (1 + noise))

    fastest = min(ok, key=lambda p: p.ms[batch_size])
    tied = [p for p in ok if span(p, batch_size)[0] <= span(fastest, batch_size)[1]]
    others = {b for p in tied for b in p.ms if b != batch_size and all(b in q.ms for q in tied)}

    def beaten(p: Any) -> bool:  # slower than a tied path beyond both intervals at another batch size
        return any(span(p, b)[0] > span(q, b)[1] for q in tied for b in others)

    kept = [p for p in tied if not beaten(p)] or tied
    return min(kept, key=lambda p: (round(quality_key(p), 6), SIMPLER[p.kind], p.ms[batch_size]))
