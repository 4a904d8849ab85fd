"""Where a workflow run's time went, by stage, from its own records (the README's cost table).

Reads the Snakemake benchmark files of the run (``<results>/benchmarks/**.tsv``: wall and CPU
seconds per job), the stage of each rule (the rule file that defines it, as
``provenance.json`` has it), and the Snakemake logs of the run's invocations (the start and
end time of every job). A run may have been paused (``kill -STOP`` on its process group, to
time something else on the same machine): the pauses are listed, one per line, as
``pause_start <ISO time> ...`` / ``pause_end <ISO time>`` in a pause log, and the seconds of
each job that fall inside a pause are reported apart from its wall time, never hidden.

Usage:
  python benchmarks/run_cost.py results/cpu --logs results/cpu/logs/snakemake/*.log \\
      --pauses results/cpu/logs/pauses.log [--json results/cpu/performance/run_cost.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections import defaultdict
from pathlib import Path

from leap.files import write_json
from leap.workflow.provenance import rule_stages

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def _time(text: str) -> float:
    return dt.datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y").timestamp()


def log_jobs(log_paths: list[Path]) -> list[dict[str, tuple[float, float]]]:
    """Per Snakemake log, ``{benchmark path: (start, end)}`` of its finished jobs (local time
    stamps, as written)."""
    out = []
    for path in log_paths:
        now, started, bench_of = None, {}, {}
        current = None
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if m := STAMP.match(line.strip()):
                now = _time(m.group(1))
                continue
            s = line.strip()
            if re.match(r"^(local)?rule \w+:$", s):
                current = {"start": now}
            elif current is not None and s.startswith("jobid: "):
                current["jobid"] = s.split()[1]
                started[current["jobid"]] = current
            elif current is not None and s.startswith("benchmark: "):
                current["benchmark"] = s.split(maxsplit=1)[1]
            elif m := re.match(r"^Finished jobid: (\d+)", s):
                job = started.get(m.group(1))
                if job and job.get("benchmark") and job["start"] is not None and now is not None:
                    bench_of[job["benchmark"]] = (job["start"], now)
        out.append(bench_of)
    return out


def merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of intervals, as disjoint sorted intervals."""
    out: list[list[float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def pauses(path: Path | None) -> list[tuple[float, float]]:
    """``[(start, end)]`` from a pause log (``pause_start <ISO>`` / ``pause_end <ISO>`` lines)."""
    if path is None or not path.exists():
        return []
    spans, start = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        kind, _, rest = line.partition(" ")
        when = dt.datetime.fromisoformat(rest.split()[0].replace("Z", "+00:00")).timestamp()
        if kind == "pause_start":
            start = when
        elif kind == "pause_end" and start is not None:
            spans.append((start, when))
            start = None
    return spans


def overlap(a: tuple[float, float], spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(a[1], e) - max(a[0], s)) for s, e in spans)


def paused_seconds(job: tuple[float, float], spans: list[tuple[float, float]]) -> float:
    """Seconds a job stood still: its overlap with the pauses that began while it ran. A job
    that started inside a pause was not paused (a stopped run starts nothing): it is a job of
    the command that ran meanwhile, such as a latency timing alone on the machine."""
    return overlap(job, [(s, e) for s, e in spans if s >= job[0]])


def stage_costs(results: Path, logs: list[Path], pause_log: Path | None, by: str = "stage") -> dict:
    """Per stage (or per rule, ``by="rule"``): jobs, wall seconds, seconds of those inside pauses, CPU seconds."""
    stages = rule_stages(ROOT / "rules")
    per_log = log_jobs(logs)
    intervals = {k: v for jobs in per_log for k, v in jobs.items()}
    spans = pauses(pause_log)  # epoch seconds; Snakemake's local stamps are read in this machine's zone
    table: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "wall_s": 0.0, "paused_s": 0.0, "cpu_s": 0.0})
    bench_root = results / "benchmarks"
    for tsv in sorted(bench_root.rglob("*.tsv")):
        lines = tsv.read_text(encoding="utf-8").splitlines()
        if len(lines) < 2:
            continue
        head, row = lines[0].split("\t"), lines[1].split("\t")
        rule = tsv.relative_to(bench_root).parts[0].removesuffix(".tsv")
        stage = stages.get(rule) or next((s for r, s in stages.items() if r.startswith(rule)), "other")
        span = next((v for k, v in intervals.items() if tsv.as_posix().endswith(k)), None)
        st = table[stage if by == "stage" else rule]
        st["jobs"] += 1
        st["wall_s"] += float(row[0])
        st["cpu_s"] += float(row[head.index("cpu_time")]) if "cpu_time" in head else 0.0
        st["paused_s"] += paused_seconds(span, spans) if span else 0.0
    return {"stages": dict(table), "pauses": [list(span) for span in spans], "run": run_span(per_log, spans)}


def run_span(per_log: list[dict[str, tuple[float, float]]], spans: list[tuple[float, float]]) -> dict | None:
    """The run's elapsed time: each log's first job start to last job end, overlapping logs
    merged into one part (a command run during a pause lies inside its part), the gaps between
    parts left out. Idle: the paused seconds in which no job ran (the jobs that started inside
    a pause ran)."""
    logs = [(min(a for a, _ in jobs.values()), max(b for _, b in jobs.values())) for jobs in per_log if jobs]
    if not logs:
        return None
    parts = merge(logs)
    # strictly after the pause began: a job stamped in the pause's first second is the run's own
    # job, stopped with it (paused_seconds counts it paused too)
    inside = merge([j for jobs in per_log for j in jobs.values() if any(s < j[0] < e for s, e in spans)])
    paused = sum(overlap(part, spans) for part in parts)
    busy = sum(overlap(job, spans) for job in inside)
    wall = sum(e - s for s, e in parts)
    return {
        "start": parts[0][0],
        "end": parts[-1][1],
        "parts": [list(p) for p in parts],
        "wall_s": wall,
        "paused_s": paused,
        "paused_busy_s": busy,
        "idle_s": paused - busy,
    }


def markdown(costs: dict, by: str = "stage") -> str:
    lines = [
        f"| {by} | jobs | wall time, sum over jobs | of which paused | CPU time |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows = sorted(costs["stages"].items(), key=lambda kv: -kv[1]["wall_s"])
    for stage, st in rows:
        lines.append(
            f"| {stage} | {st['jobs']} | {st['wall_s'] / 60:.1f} min | {st['paused_s'] / 60:.1f} min "
            f"| {st['cpu_s'] / 60:.1f} min |"
        )
    total = {k: sum(st[k] for _, st in rows) for k in ("jobs", "wall_s", "paused_s", "cpu_s")}
    lines.append(
        f"| all | {total['jobs']} | {total['wall_s'] / 60:.1f} min | {total['paused_s'] / 60:.1f} min "
        f"| {total['cpu_s'] / 60:.1f} min |"
    )
    if run := costs.get("run"):
        n = len(run["parts"])
        parts = f"{n} parts, " if n > 1 else ""
        gaps = ", the gaps between parts left out" if n > 1 else ""
        busy = (
            f" ({run['paused_busy_s'] / 60:.1f} min of it running jobs of a command started during a pause)"
            if run["paused_busy_s"]
            else ""
        )
        lines += [
            "",
            f"Run: {parts}first job start to last job end {run['wall_s'] / 60:.1f} min{gaps}; paused "
            f"{run['paused_s'] / 60:.1f} min{busy}, idle {run['idle_s'] / 60:.1f} min: "
            f"{(run['wall_s'] - run['idle_s']) / 60:.1f} min of running.",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="the run's results folder, e.g. results/cpu")
    ap.add_argument("--logs", type=Path, nargs="*", default=[], help="the Snakemake logs of the run's invocations")
    ap.add_argument("--pauses", type=Path, default=None, help="pause log (pause_start/pause_end lines)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--by", choices=("stage", "rule"), default="stage", help="one row per stage or per rule")
    args = ap.parse_args()
    costs = stage_costs(args.results, args.logs, args.pauses, args.by)
    print(markdown(costs, args.by))
    if args.json:
        write_json(args.json, costs)


if __name__ == "__main__":
    main()
