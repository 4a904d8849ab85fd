"""Two runs of one config, number by number: which numbers agree, and which differ by how much.

Every evaluation JSON (``*/eval/*.json``, ``published/*/eval/*.json``) and every table CSV
(``tables/*.csv``, ``claims.csv``) present in both folders is read; each number is named by
its file and key path (a CSV cell by file, row number and column), and compared. The summary
groups the differing numbers by their key name (the last part of the path: ``ms_b1``,
``spearman``...), so timings, which differ from run to run, stand apart from quality numbers,
which a deterministic rerun reproduces exactly.

Beside the key groups, each number is placed by where it comes from (``published``
checkpoints, which no training touches; ``trained`` students; ``tables`` and claims) and by
kind (``timing``: ms, seconds, speed-ups, overheads, efficiencies; ``quality``: every other
number), and counted within or beyond ``--tolerance`` (1e-5, the evaluation engine's check).
Where the trained students moved (a change of training, e.g. its precision), each number of a
variant trained on two or more seeds is set against that variant's seed-to-seed spread: the
shift of its seed mean in units of the first run's seed standard deviation. Claims whose
verdict changed are listed.

Usage (the committed run against a rerun, e.g. after a code change that should not move a
number):
  git archive <commit> results/cpu | tar -x -C /tmp/old
  python benchmarks/compare_runs.py /tmp/old/results/cpu results/cpu --out results/cpu/performance/rerun_agreement
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
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


TIMING = re.compile(r"(?i)(^|[^a-z])(ms|seconds|speedup|overhead|efficiency)([^a-z]|$)")
"""Key names of timings (and ratios of timings), which differ from run to run and machine to machine."""
HEADLINE = re.compile(r"splits/test/(spearman_full|spearman_exit|exit_rate|expected_exit_layer)")
"""The STS-B test numbers listed one by one in the seed-spread table."""
SEED_DIR = re.compile(r"^(?P<variant>[^/]+)/seed(?P<seed>\d+)/(?P<rest>.+)$")


def source_of(rel: Path) -> str:
    """``published``, ``tables`` (tables and claims) or ``trained`` (a student's own files)."""
    first = rel.parts[0]
    return "published" if first == "published" else "tables" if first in ("tables", "claims.csv") else "trained"


def kind_of(key: tuple[str, ...]) -> str:
    return "timing" if TIMING.search(key_name(key)) else "quality"


def seed_shifts(old: Path, new: Path, files: list[Path]) -> list[dict]:
    """Per quality number of a variant trained on 2+ seeds in both runs: the shift of its seed
    mean, and that shift over the first run's seed standard deviation (``z``; None where the
    seeds agree exactly)."""
    groups: dict[tuple[str, str, tuple[str, ...]], dict[str, dict[str, float]]] = defaultdict(
        lambda: {"old": {}, "new": {}}
    )
    for f in files:
        m = SEED_DIR.match(f.as_posix())
        if not m or source_of(f) != "trained":
            continue
        for run, root in (("old", old), ("new", new)):
            for k, v in file_numbers(root / f).items():
                if kind_of(k) == "quality":
                    groups[(m["variant"], m["rest"], k)][run][m["seed"]] = v
    out = []
    for (variant, rest, key), runs in groups.items():
        seeds = sorted(runs["old"].keys() & runs["new"].keys())
        if len(seeds) < 2:
            continue
        a, b = [runs["old"][s] for s in seeds], [runs["new"][s] for s in seeds]
        sd = statistics.stdev(a)
        shift = statistics.fmean(b) - statistics.fmean(a)
        out.append(
            {
                "variant": variant,
                "file": rest,
                "key": "/".join(key),
                "seeds": len(seeds),
                "shift": shift,
                "seed_sd": sd,
                "z": abs(shift) / sd if sd > 0 else (None if shift == 0 else math.inf),
            }
        )
    return out


def verdict_changes(old: Path, new: Path) -> list[dict]:
    """Claims (``claims.csv``, by claim and variant) whose verdict differs between the runs."""
    if not (old / "claims.csv").exists() or not (new / "claims.csv").exists():
        return []
    a, b = (pd.read_csv(r / "claims.csv").fillna("") for r in (old, new))
    key = ["claim", "variant"]
    both = a.merge(b, on=key, suffixes=("_old", "_new"))
    moved = both[both["verdict_old"] != both["verdict_new"]]
    cols = [*key, "measured_old", "measured_new", "verdict_old", "verdict_new"]
    return moved[cols].to_dict("records")


def compare(old: Path, new: Path, tolerance: float = 1e-5) -> dict:
    """Per key name: how many numbers were compared, how many differ, the largest absolute
    and relative difference; and the files only one run has."""
    rel = {p.relative_to(new) for pat in PATTERNS for p in new.glob(pat)}
    old_rel = {p.relative_to(old) for pat in PATTERNS for p in old.glob(pat)}
    by_key: dict[str, dict] = defaultdict(lambda: {"compared": 0, "differ": 0, "max_abs": 0.0, "max_rel": 0.0})
    by_source: dict[str, dict] = defaultdict(lambda: {"compared": 0, "beyond_tolerance": 0, "max_abs": 0.0})
    both = sorted(rel & old_rel)
    for f in both:
        a, b = file_numbers(old / f), file_numbers(new / f)
        for k in a.keys() & b.keys():
            s = by_key[key_name(k)]
            s["compared"] += 1
            d = abs(a[k] - b[k])
            g = by_source[f"{source_of(f)} {kind_of(k)}"]
            g["compared"] += 1
            g["max_abs"] = max(g["max_abs"], d)
            g["beyond_tolerance"] += d > tolerance
            if d > 0:
                s["differ"] += 1
                s["max_abs"] = max(s["max_abs"], d)
                s["max_rel"] = max(s["max_rel"], d / abs(a[k]) if a[k] else math.inf)
    return {
        "files_compared": len(both),
        "only_old": sorted(map(str, old_rel - rel)),
        "only_new": sorted(map(str, rel - old_rel)),
        "tolerance": tolerance,
        "keys": dict(sorted(by_key.items())),
        "sources": dict(sorted(by_source.items())),
        "seed_shifts": seed_shifts(old, new, both),
        "verdict_changes": verdict_changes(old, new),
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
    return "\n".join(lines + _by_source(res)) + "\n"


def _by_source(res: dict) -> list[str]:
    """Where the numbers come from, within or beyond the tolerance; the trained students'
    shifts against their seed spread; the claims whose verdict changed."""
    lines = [
        "",
        f"## By source, within {res['tolerance']:g}",
        "",
        "| source | kind | numbers | beyond tolerance | largest difference |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, g in res["sources"].items():
        src, kind = name.split()
        lines.append(f"| {src} | {kind} | {g['compared']} | {g['beyond_tolerance']} | {g['max_abs']:.4g} |")
    shifts = [s for s in res["seed_shifts"] if s["z"] is not None]
    if shifts:
        zs = [s["z"] for s in shifts]
        within = {t: sum(z <= t for z in zs) for t in (1, 2, 3)}
        lines += [
            "",
            "## Trained students against their seed spread",
            "",
            f"{len(shifts)} quality numbers of variants trained on 2+ seeds (the seed-mean shift over the "
            f"first run's seed standard deviation, z): {within[1]} ({within[1] / len(zs):.0%}) within 1 sd, "
            f"{within[2]} ({within[2] / len(zs):.0%}) within 2 sd, "
            f"{within[3]} ({within[3] / len(zs):.0%}) within 3 sd.",
            "",
            "| variant | file | key | seed-mean shift | seed sd | z |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        headline = [s for s in shifts if s["file"] == "eval/stsb.json" and HEADLINE.fullmatch(s["key"])]
        for s in sorted(headline, key=lambda s: (s["variant"], s["key"])):
            row = [
                s["variant"],
                s["file"],
                f"`{s['key']}`",
                f"{s['shift']:+.4f}",
                f"{s['seed_sd']:.4f}",
                f"{s['z']:.2f}",
            ]
            lines.append("| " + " | ".join(row) + " |")
    changes = res["verdict_changes"]
    lines += ["", f"## Claims whose verdict changed: {len(changes) or 'none'}", ""]
    if changes:
        lines += ["| claim | variant | measured | verdict |", "| --- | --- | --- | --- |"]
        for c in changes:
            lines.append(
                f"| {c['claim']} | {c['variant']} | {c['measured_old']} -> {c['measured_new']} | "
                f"{c['verdict_old']} -> {c['verdict_new']} |"
            )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path, help="the first run's results folder")
    ap.add_argument("new", type=Path, help="the second run's results folder")
    ap.add_argument("--out", help="output prefix: <out>.json and <out>.md")
    ap.add_argument("--tolerance", type=float, default=1e-5, help="largest difference counted as equal")
    a = ap.parse_args()
    res = compare(a.old, a.new, a.tolerance)
    command = f"python benchmarks/compare_runs.py {a.old} {a.new}" + (f" --out {a.out}" if a.out else "")
    md = markdown(res, command)
    if a.out:
        write_json(f"{a.out}.json", {"command": command, **res})
        write_text(f"{a.out}.md", md)
    print(md)


if __name__ == "__main__":
    main()
