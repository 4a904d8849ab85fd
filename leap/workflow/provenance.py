"""Which code made a run's numbers.

Every ``snakemake`` invocation that runs jobs appends one line to
``results/{experiment}/logs/invocations.jsonl`` (:func:`record_invocation`, from the
workflow's ``onstart``): the time, the command line, the git commit, whether the tree was
dirty, the *code hash* (the git tree of the paths that make results: ``leap/``, ``rules/``,
``workflow_scripts/``, ``Snakefile``, ``config/``) and the hashes of the config files. At the
end of the run, :func:`build_provenance` writes ``provenance.json``: those invocations, the
machine, and the wall time per stage summed from the jobs' own benchmark files. A run is
``consistent`` when every invocation ran one code hash from a clean tree: then the results
were made by the code at ``commit`` even if the run was done in parts, and any later commit
with the same code hash holds the same code.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

CODE_PATHS = ("leap", "rules", "workflow_scripts", "Snakefile", "config")
"""What makes results: a change under any of these may change a number."""


def _git(root: str | os.PathLike, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def head_commit(root: str | os.PathLike) -> str | None:
    """The commit checked out at ``root`` (None outside git)."""
    return _git(root, "rev-parse", "HEAD")


def code_hash(root: str | os.PathLike, rev: str = "HEAD") -> str | None:
    """SHA-256 over the git tree ids of :data:`CODE_PATHS` at ``rev`` (None outside git)."""
    ids = []
    for path in CODE_PATHS:
        tree = _git(root, "rev-parse", f"{rev}:{path}")
        if tree is None:
            return None
        ids.append(f"{path} {tree}")
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def git_state(root: str | os.PathLike) -> dict:
    """``commit``, ``dirty`` (tracked files under :data:`CODE_PATHS` differ from it) and ``code_hash``."""
    commit = head_commit(root)
    if commit is None:
        return {"commit": None, "dirty": None, "code_hash": None}
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    return {"commit": commit, "dirty": bool(status), "code_hash": code_hash(root)}


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _shown(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to the repository ``root`` where it lies inside it (a record that
    reads the same on every machine), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def record_invocation(
    log_path: str | os.PathLike, root: str | os.PathLike, argv: Sequence[str], configfiles: Iterable[str]
) -> dict:
    """Append this invocation (time, command line, git state, config hashes) to ``log_path``."""
    rec = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": list(argv),
        **git_state(root),
        "configfiles": {_shown(c, root): file_sha256(c) for c in configfiles if Path(c).is_file()},
    }
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
    return rec


def machine() -> dict:
    """CPU model, cores, memory, OS and Python of this machine."""
    cpu = platform.processor() or platform.machine()
    mem = None
    try:
        info = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
        cpu = m.group(1).strip() if m else cpu
        mm = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem = round(int(mm.group(1)) / 2**20, 1) if mm else None
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def rule_stages(rules_dir: str | os.PathLike) -> dict[str, str]:
    """``{rule: stage}``: each rule's stage is the stem of the rule file that defines it."""
    out = {}
    for f in sorted(Path(rules_dir).glob("*.smk")):
        for name in re.findall(r"^rule (\w+):", f.read_text(encoding="utf-8"), re.M):
            out[name] = f.stem
    return out


def stage_times(benchmarks_dir: str | os.PathLike, stages: dict[str, str]) -> dict[str, dict]:
    """Per stage: jobs and their summed wall seconds, from the Snakemake benchmark TSVs
    (``benchmarks/{rule}/...tsv``; a rule's folder name is the rule or its short name)."""
    out: dict[str, dict] = {}
    root = Path(benchmarks_dir)
    for tsv in sorted(root.rglob("*.tsv")):
        rule = tsv.relative_to(root).parts[0].removesuffix(".tsv")
        stage = stages.get(rule) or next((s for r, s in stages.items() if r.startswith(rule)), "other")
        lines = tsv.read_text(encoding="utf-8").splitlines()
        if len(lines) < 2:
            continue
        seconds = float(lines[1].split("\t")[0])
        st = out.setdefault(stage, {"jobs": 0, "seconds": 0.0, "rules": {}})
        st["jobs"] += 1
        st["seconds"] += seconds
        st["rules"][rule] = st["rules"].get(rule, 0.0) + seconds
    return out


def build_provenance(
    invocations_path: str | os.PathLike,
    benchmarks_dir: str | os.PathLike,
    rules_dir: str | os.PathLike,
    root: str | os.PathLike,
) -> dict:
    """The run's provenance record (see the module docstring)."""
    p = Path(invocations_path)
    lines = p.read_text(encoding="utf-8").splitlines() if p.exists() else []
    inv = [json.loads(line) for line in lines if line.strip()]
    now = git_state(root)
    hashes = sorted({i.get("code_hash") for i in inv if i.get("code_hash")} | {now["code_hash"]} - {None})
    configs: dict[str, str] = {}
    for i in inv:
        configs.update(i.get("configfiles", {}))
    consistent = bool(inv) and len(hashes) == 1 and not any(i.get("dirty") for i in inv) and not now["dirty"]
    return {
        "commit": now["commit"],
        "dirty": bool(now["dirty"]) or any(bool(i.get("dirty")) for i in inv),
        "code_hash": now["code_hash"],
        "code_paths": list(CODE_PATHS),
        "consistent": consistent,
        "code_hashes_seen": hashes,
        "commits_seen": sorted({i["commit"] for i in inv if i.get("commit")}),
        "config_files": configs,
        "commands": [" ".join(i["argv"]) for i in inv],
        "invocations": inv,
        "start": inv[0]["time"] if inv else None,
        "end": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "stages": stage_times(benchmarks_dir, rule_stages(rules_dir)),
    }


def provenance_markdown(prov: dict) -> str:
    """The provenance section of ``report.md``."""
    state = "clean" if not prov["dirty"] else "DIRTY (uncommitted code changes)"
    lines = [
        "## Provenance",
        "",
        f"Code: commit `{prov['commit']}` ({state}); code hash `{(prov['code_hash'] or '')[:16]}` over "
        f"{', '.join(prov['code_paths'])}. "
        + (
            "Every invocation of this run ran that code from a clean tree."
            if prov["consistent"]
            else f"NOT one code: {len(prov['code_hashes_seen'])} code hashes, commits {prov['commits_seen']}."
        ),
        "",
        f"Run: {prov['start']} to {prov['end']} on {prov['machine']['cpu']} ({prov['machine']['cores']} cores).",
        "",
        "| stage | jobs | wall time (sum over jobs) |",
        "| --- | --- | --- |",
    ]
    for stage, st in sorted(prov["stages"].items(), key=lambda kv: -kv[1]["seconds"]):
        lines.append(f"| {stage} | {st['jobs']} | {st['seconds'] / 60:.1f} min |")
    lines += ["", "Commands:", ""] + [f"    {c}" for c in prov["commands"]] + [""]
    return "\n".join(lines)


def stale_results(results_dir: str | os.PathLike, root: str | os.PathLike) -> str | None:
    """Why the results in ``results_dir`` are not current for the code at ``root``, or ``None``.

    They are current when the directory holds no results yet, or when every invocation that
    made them (``logs/invocations.jsonl``) ran the code hash of ``root``'s HEAD from a clean
    tree and ``root``'s tree is clean too. Results without that record cannot be vouched for.
    """
    results = Path(results_dir)
    made = [p for p in results.rglob("*") if p.is_file() and "logs" not in p.relative_to(results).parts[:1]]
    if not made:
        return None
    rerun = (
        f"to rerun from scratch, empty {results} (`rm -r {results}`); to use them anyway, "
        "pass ALLOW_STALE=1 (`make cpu ALLOW_STALE=1`)"
    )
    log = results / "logs" / "invocations.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines() if log.is_file() else []
    inv = [json.loads(line) for line in lines if line.strip()]
    if not inv:
        return f"{results} holds results but no record of the code that made them ({log}); {rerun}"
    now = git_state(root)
    seen = sorted({str(i.get("code_hash")) for i in inv})
    if seen != [str(now["code_hash"])]:
        return (
            f"{results} was made by code hash {', '.join(h[:12] for h in seen)}, but this tree's code "
            f"({', '.join(CODE_PATHS)}) has code hash {str(now['code_hash'])[:12]} (commit "
            f"{str(now['commit'])[:12]}): its numbers may not be this code's; {rerun}"
        )
    if now["dirty"] or any(i.get("dirty") for i in inv):
        where = ", ".join(CODE_PATHS)
        return f"{results} or this tree has uncommitted code changes ({where}); commit them, then {rerun}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m leap.workflow.provenance current RESULTS_DIR``: exit 1 with one line when
    the results there are not current for this checkout's code (:func:`stale_results`)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m leap.workflow.provenance")
    sub = ap.add_subparsers(dest="command", required=True)
    cur = sub.add_parser("current", help="refuse results made by other code than this checkout's")
    cur.add_argument("results_dir")
    cur.add_argument("--root", default=".", help="the repository (default: here)")
    args = ap.parse_args(argv)
    why = stale_results(args.results_dir, args.root)
    if why is not None:
        print(f"error: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
