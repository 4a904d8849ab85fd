"""The paper's tables from the evaluation JSONs (CSV and Markdown); the frontier's are
:mod:`leap.workflow.frontier_tables`. Which tables exist, in which order and with which arguments is
``leap/workflow/resources/report_items.yaml``; each has one builder registered with ``@table``
(:mod:`leap.workflow.tables.registry`) in :mod:`leap.workflow.tables.main` or :mod:`leap.workflow.tables.layers`.

Each builder takes the collected results (:func:`leap.workflow.results.collect`) and returns a
``pandas.DataFrame`` with the paper's column names (or ``None`` when its runs are
missing); :func:`write_table` writes both formats atomically. Intervals over seeds are
95% t-intervals (:func:`leap.workflow.results.seed_summary`); the seed values are listed beside.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from leap.errors import LeapError
from leap.files import write_json
from leap.workflow.results import ITEMS_FILE, collect, report_items, table_order
from leap.workflow.tables import layers, main  # noqa: F401  (registers the builders)
from leap.workflow.tables.layers import layer_mixing_table, table4_per_layer
from leap.workflow.tables.main import table1_main, table10_strategies, table11_ablation
from leap.workflow.tables.registry import TABLE_BUILDERS, table, write_table

log = logging.getLogger(__name__)

__all__ = [
    "TABLE_BUILDERS",
    "build_tables",
    "layer_mixing_table",
    "table",
    "table1_main",
    "table4_per_layer",
    "table10_strategies",
    "table11_ablation",
    "table_builders",
    "write_table",
]


def table_builders(train_configs: dict | None = None, diagnostics: dict | None = None) -> dict:
    """Every table the ``tables`` rule writes, in the report items' order: name -> builder of
    the collected results (with the item's arguments from the items file)."""
    extra = {"train_configs": train_configs or {}, "diagnostics": diagnostics}
    out = {}
    for item in report_items()["tables"]:
        if item.name not in TABLE_BUILDERS:
            raise LeapError(f"table {item.name!r} of {ITEMS_FILE.name} has no builder; register one with @table")
        fn, needs = TABLE_BUILDERS[item.name]
        if needs is None:
            out[item.name] = lambda r, fn=fn, a=item.args: fn(r, **a)
        elif needs == "diagnostics":
            out[item.name] = lambda r, fn=fn, a=item.args: (
                fn(extra["diagnostics"], **a) if extra["diagnostics"] else None
            )
        else:
            out[item.name] = lambda r, fn=fn, a=item.args, n=needs: fn(extra[n], **a)
    return out


def build_tables(
    eval_paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    train_configs: dict[str, str | os.PathLike] | None = None,
    diagnostics: dict[str, str | os.PathLike] | None = None,
) -> dict[str, str]:
    """Write every table (CSV + Markdown) into ``out_dir``; a table whose runs are missing is
    written as one row saying so (the file always exists, so the report can list it).
    Returns ``{table: "written" | "skipped: <why>"}`` (also written as ``index.json``)."""
    res = collect(eval_paths)
    out = Path(out_dir)
    status: dict[str, str] = {}
    for name, fn in sorted(table_builders(train_configs, diagnostics).items(), key=lambda kv: table_order(kv[0])):
        df = fn(res)
        if df is None or df.empty:
            status[name] = f"skipped: its runs are missing (have variants {sorted(res)})"
            log.info("%s: %s", name, status[name])
            df = pd.DataFrame({"note": [f"not run in this configuration: {status[name][9:]}"]})
        else:
            status[name] = "written"
        write_table(df, out / f"{name}.csv", out / f"{name}.md")
    write_json(out / "index.json", status)
    return status
