"""The paper's tables from the evaluation JSONs, as CSV and Markdown.

Each builder takes the JSON files its table needs and returns a ``pandas.DataFrame``
with the paper's column names; :func:`write_table` writes both formats atomically.
"""

from __future__ import annotations

import json
import os

import pandas as pd

from leap.files import write_text


def _load(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def table2_cross_distillation(diagnostics: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """Table 2: the exit diagnostic on published (distilled) checkpoints.

    Args:
        diagnostics: model name -> ``diagnostic.json`` (:func:`leap.diagnostic.diagnose`).
    """
    rows = []
    for name, path in diagnostics.items():
        d = _load(path)
        l_min = d["exit"]["min_layer"]
        sim = d["similarity_to_final"]
        rows.append(
            {
                "Model": name,
                "Layers": len(d["layers"]),
                "l_min": l_min,
                "Sim. to final @ l_min": sim[l_min - 1],
                "Exit rate (theta=%.2f)" % d["exit"]["theta"]: d["exit_rate"],
                "E[l]": d["expected_exit_layer"],
                "Layer reduction": d["layer_reduction"],
                "Monitoring overhead": d["monitoring_overhead"],
                "Verdict": d["verdict"],
            }
        )
    return pd.DataFrame(rows)


def write_table(df: pd.DataFrame, csv_path: str | os.PathLike, md_path: str | os.PathLike, floatfmt: str = ".3f") -> None:
    """Write ``df`` as CSV and as a Markdown table (atomically)."""
    write_text(csv_path, df.to_csv(index=False))
    cols = list(df.columns)
    fmt = lambda v: format(v, floatfmt) if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    write_text(md_path, "\n".join(lines) + "\n")
