"""Two runs of one config, number by number: which numbers agree, and which differ by how much.

Every evaluation JSON (``*/eval/*.json``, ``published/*/eval/*.json``) and every table CSV
(``tables/*.csv``, ``claims.csv``) present in both folders is read; each number is named by
its file and key path (a CSV cell by file, row number and column), and compared. The summary
groups the differing numbers by their key name (the last part of the path: ``ms_b1``,
``spearman``...), so timings, which differ from run to run, stand apart from quality numbers,
which a deterministic rerun reproduces exactly.

Usage (the committed run against a rerun, e.g. after a code change that should not move a
number):
  git archive <commit> results/cpu | tar -x -C /tmp/old
  python benchmarks/compare_runs.py /tmp/old/results/cpu results/cpu --out results/cpu/performance/rerun_agreement
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from leap.files import write_json, write_text

PATTERNS = ("*/seed*/eval/*.json", "published/*/eval/*.json", "tables/*.csv", "claims.csv")


def numbers(obj: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], float]]:
    """``(key path, value)`` for every number in a JSON value (booleans are not numbers)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, (*path, str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from numbers(v, (*path, str(i)))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, float(obj)


def file_numbers(path: Path) -> dict[tuple[str, ...], float]:
    if path.suffix == ".json":
        return dict(numbers(json.loads(path.read_text(encoding="utf-8"))))
    df = pd.read_csv(path)
    out = {}
    for col in df.columns:
        vals = pd.to_numeric(df[col], errors="coerce")
        for i, v in vals.items():
            if not math.isnan(v):
                out[(str(i), str(col))] = float(v)
    return out


def key_name(path: tuple[str, ...]) -> str:
    """The last non-index part of a key path (``rows/0/ms_b1`` -> ``ms_b1``)."""
    named = [p for p in path if not p.isdigit()]
    return named[-1] if named else "/".join(path)


def compare(old: Path, new: Path) -> dict:
    """Per key name: how many numbers were compared, how many differ, the largest absolute
    and relative difference; and the files only one run has."""
    rel = {p.relative_to(new) for pat in PATTERNS for p in new.glob(pat)}
    old_rel = {p.relative_to(old) for pat in PATTERNS for p in old.glob(pat)}
    by_key: dict[str, dict] = defaultdict(lambda: {"compared": 0, "differ": 0, "max_abs": 0.0, "max_rel": 0.0})
    for f in sorted(rel & old_rel):
        a, b = file_numbers(old / f), file_numbers(new / f)
        for k in a.keys() & b.keys():
            s = by_key[key_name(k)]
            s["compared"] += 1
            d = abs(a[k] - b[k])
            if d > 0:
                s["differ"] += 1
                s["max_abs"] = max(s["max_abs"], d)
                s["max_rel"] = max(s["max_rel"], d / abs(a[k]) if a[k] else math.inf)
    return {
        "files_compared": len(rel & old_rel),
        "only_old": sorted(map(str, old_rel - rel)),
        "only_new": sorted(map(str, rel - old_rel)),
        "keys": dict(sorted(by_key.items())),
    }


def markdown(res: dict, command: str) -> str:
    keys = res["keys"]
    same = sorted(k for k, s in keys.items() if s["differ"] == 0)
    differ = sorted((k for k, s in keys.items() if s["differ"]), key=lambda k: -keys[k]["differ"])
    total = sum(s["compared"] for s in keys.values())
    n_diff = sum(s["differ"] for s in keys.values())
    lines = [
        "# Two runs, number by number",
        "",
        f"`{command}`",
        "",
        f"{res['files_compared']} files in both runs; {total} numbers compared, "
        f"{total - n_diff} equal, {n_diff} differ.",
        f"Files in the first run only: {', '.join(res['only_old']) or 'none'}.",
        f"Files in the second run only: {', '.join(res['only_new']) or 'none'}.",
        "",
        "| key | numbers | differ | largest difference | largest relative difference |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k in differ:
        s = keys[k]
        lines.append(f"| `{k}` | {s['compared']} | {s['differ']} | {s['max_abs']:.4g} | {s['max_rel']:.2%} |")
    lines += ["", f"Equal in every file ({len(same)} keys): " + ", ".join(f"`{k}`" for k in same) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path, help="the first run's results folder")
    ap.add_argument("new", type=Path, help="the second run's results folder")
    ap.add_argument("--out", help="output prefix: <out>.json and <out>.md")
    a = ap.parse_args()
    res = compare(a.old, a.new)
    command = f"python benchmarks/compare_runs.py {a.old} {a.new}" + (f" --out {a.out}" if a.out else "")
    md = markdown(res, command)
    if a.out:
        write_json(f"{a.out}.json", {"command": command, **res})
        write_text(f"{a.out}.md", md)
    print(md)


if __name__ == "__main__":
    main()
