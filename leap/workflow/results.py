"""Reading a run's evaluation JSONs back: the one place tables, figures and the report get
their numbers from.

Paths follow the results layout: ``.../{variant}/seed{seed}/eval/{name}.json`` for
trained models and ``.../published/{name}/eval/{eval}.json`` for published checkpoints
(collected as variant ``published:{name}``, seed 0).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

Results = dict[str, dict[int, dict[str, dict]]]
"""``{variant: {seed: {eval_name: json}}}``."""

_EVAL = re.compile(r"(?P<variant>[^/]+)/seed(?P<seed>\d+)/eval/(?P<name>[^/]+)\.json$")
_PUBLISHED = re.compile(r"published/(?P<model>[^/]+)/eval/(?P<name>[^/]+)\.json$")
PUBLISHED_PREFIX = "published:"
PAPER_VARIANTS = ("baseline", "leap", "fixed_depth", "deebert", "adaptive_layer", "layerskip")
ITEMS_FILE = Path(__file__).parent / "resources" / "report_items.yaml"


@dataclass(frozen=True)
class ReportItem:
    """A table or figure of the run (an entry of ``leap/workflow/resources/report_items.yaml``)."""

    name: str
    label: str
    category: str
    kind: str  # "tables" or "figures"
    args: dict = field(default_factory=dict)


@cache
def report_items() -> dict[str, tuple[ReportItem, ...]]:
    """``{"tables": (...), "figures": (...)}`` in the file's order."""
    import yaml

    data = yaml.safe_load(ITEMS_FILE.read_text(encoding="utf-8"))
    return {
        kind: tuple(
            ReportItem(e["name"], e["label"], e["category"], kind, dict(e.get("args") or {})) for e in data[kind]
        )
        for kind in ("tables", "figures")
    }


def report_groups() -> dict[str, dict[str, str]]:
    """``{category: {item name: label}}`` of every table and figure (the reports' sections)."""
    out: dict[str, dict[str, str]] = {}
    for item in (*report_items()["tables"], *report_items()["figures"]):
        out.setdefault(item.category, {})[item.name] = item.label
    return out


TABLE_NAMES = tuple(t.name for t in report_items()["tables"])
"""Every table the ``tables`` rule writes (:func:`leap.workflow.tables.build_tables`)."""
FIGURE_NAMES = tuple(f.name for f in report_items()["figures"])
"""Every figure the ``figures`` rule writes (Fig. 3, the frontier, is the frontier rule's)."""


def table_order(name: str) -> tuple[int, str]:
    """Sort key of a table name: the paper's number (``table11_ablation`` -> 11); tables that
    are not in the paper (no number) after the paper's."""
    m = re.search(r"\d+", name)
    return (int(m.group()) if m else 99, name)


def frontier_figure_name(benchmark: str) -> str:
    """``fig3_frontier_<benchmark>``: the frontier figure of one benchmark."""
    return "fig3_frontier_" + re.sub(r"[^A-Za-z0-9]+", "_", benchmark).strip("_").lower()


def load_json(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def collect(paths: Iterable[str | os.PathLike]) -> Results:
    """:data:`Results` from evaluation JSON paths (other paths are ignored)."""
    out: Results = {}
    for p in paths:
        s = str(p).replace(os.sep, "/")
        m = _PUBLISHED.search(s)
        if m:
            out.setdefault(PUBLISHED_PREFIX + m["model"], {}).setdefault(0, {})[m["name"]] = load_json(p)
            continue
        m = _EVAL.search(s)
        if m:
            out.setdefault(m["variant"], {}).setdefault(int(m["seed"]), {})[m["name"]] = load_json(p)
    return out


def runs(res: Results, variant: str, name: str) -> list[dict]:
    """The ``name`` evaluation of every seed of ``variant`` (seed order)."""
    return [evals[name] for _, evals in sorted(res.get(variant, {}).items()) if name in evals]


def mean(xs: Sequence[float | None]) -> float | None:
    """Mean of the values that exist (``None`` and NaN skipped); ``None`` if none."""
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else None


def mean_list(lists: Sequence[Sequence[float | None]]) -> list[float | None]:
    """Element-wise :func:`mean` of equal-length lists."""
    return [mean(col) for col in zip(*lists)] if lists else []


def is_published(variant: str) -> bool:
    return variant.startswith(PUBLISHED_PREFIX)


def extra_variants(res: Results) -> list[str]:
    """Trained variants beyond the paper's rows (e.g. ``leap_fix``, ``leap_xd`` or a config's
    ``custom_variants``): reported beside ``leap`` wherever LEAP is. Ablation (``abl_*``) and
    sweep (``beta*``) runs have tables of their own."""
    return sorted(
        v for v in res if v not in PAPER_VARIANTS and not v.startswith(("abl_", "beta")) and not is_published(v)
    )


def seed_summary(values: Sequence[float | None], level: float = 0.95) -> dict:
    """Mean over seeds, the seed values, and a ``level`` t-interval of the mean (scipy).

    With one value the interval is undefined (``None``). With 3 seeds a t-interval is
    wide (t = 4.30 at 95%); that is the honest width of 3 seeds.
    """
    from scipy import stats

    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0, "values": [], "interval": "t"}
    m = float(x.mean())
    if x.size == 1:
        return {"mean": m, "ci_low": None, "ci_high": None, "n": 1, "values": x.tolist(), "interval": "t"}
    if float(x.std(ddof=1)) == 0.0:
        return {"mean": m, "ci_low": m, "ci_high": m, "n": int(x.size), "values": x.tolist(), "interval": "t"}
    lo, hi = stats.t.interval(level, df=x.size - 1, loc=m, scale=stats.sem(x))
    return {
        "mean": m,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "n": int(x.size),
        "values": x.tolist(),
        "interval": "t",
    }


def seed_interval(values: Sequence[float | None]) -> str:
    """``mean [95% t-interval]`` over seeds (``(1 seed)`` when there is one), three decimals."""
    s = seed_summary(values)
    if s["n"] == 0:
        return ""
    if s["n"] == 1:
        return f"{s['mean']:.3f} (1 seed)"
    return f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def seed_values(values: Sequence[float | None]) -> str:
    """The seed values themselves, ``a / b / c``."""
    return " / ".join(f"{v:.3f}" for v in values if v is not None)
