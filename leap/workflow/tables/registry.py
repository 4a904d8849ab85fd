"""The table registry: one builder per table name (``@table``), and writing a table as CSV and Markdown."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pandas as pd

from leap.files import write_text

log = logging.getLogger(__name__)


def write_table(
    df: pd.DataFrame, csv_path: str | os.PathLike, md_path: str | os.PathLike, floatfmt: str = ".3f"
) -> None:
    """Write ``df`` as CSV and as a Markdown table (atomically); a value not measured is left
    empty, never "nan"."""
    write_text(csv_path, df.to_csv(index=False))
    write_text(md_path, df.to_markdown(index=False, floatfmt=floatfmt, missingval="") + "\n")


TABLE_BUILDERS: dict[str, tuple[Callable[..., pd.DataFrame | None], str | None]] = {}
"""``name -> (builder, what it reads besides the results: None, "train_configs" or "diagnostics")``;
the tables themselves are listed in ``leap/workflow/resources/report_items.yaml``."""


def table(name: str, needs: str | None = None) -> Callable:
    """Register a table builder under ``name`` (its entry in the report items file)."""

    def register(fn: Callable) -> Callable:
        TABLE_BUILDERS[name] = (fn, needs)
        return fn

    return register
