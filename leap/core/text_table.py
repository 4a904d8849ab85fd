"""Plain-text tables for terminals and text files (``leap`` sub-commands, calibration tables)."""

from __future__ import annotations

import math


def fmt(x: object, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if pct:
        return f"{100 * float(x):.1f}%"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
