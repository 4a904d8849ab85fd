"""The fault table of the docs (docs/faults.md) is written by the fault tests themselves.

Each test whose name says ``fault`` injects one fault for real and calls :func:`record` with
what it injected and what the user saw (the one line, or the recovery). Normally the call
checks that docs/faults.md holds that row as observed; with ``LEAP_RECORD_FAULTS=1`` it
writes the row there instead (``LEAP_RECORD_FAULTS=1 pytest -k fault``). So the table is the
tests' own results, and a test whose message changes fails until the table is rewritten.
"""

from __future__ import annotations

import fcntl
import os
import re
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "faults.md"
BEGIN, END = "<!-- fault table: written by the fault tests (tests/faults.py) -->", "<!-- end of fault table -->"
HEADER = ["| fault | injected by the tests as | what the user sees | what is lost |", "| --- | --- | --- | --- |"]


def normalise(text: str) -> str:
    """A message as the table shows it: paths, ports, digests, pids and times made generic."""
    text = " ".join(text.split()).replace(str(ROOT), "<repo>")
    text = re.sub(r"/(?:tmp|var/folders)/[^\s'\"),;]*", "<tmp>", text)
    text = re.sub(r"https?://127\.0\.0\.1:\d+", "<stand-in Hub>", text)
    text = re.sub(r"\b[0-9a-f]{32,64}\b", "<digest>", text)
    text = re.sub(r"pid \d+", "pid <pid>", text)
    text = re.sub(r"checkpoint-\d+", "checkpoint-<step>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<time>", text)
    text = re.sub(r"(since <time>): [^)]*\)", r"\1: <command>)", text)
    return text.replace("|", "\\|")


def _rows(text: str) -> dict[str, str]:
    body = text.split(BEGIN, 1)[1].split(END, 1)[0] if BEGIN in text else ""
    return {line.split(" | ")[0].removeprefix("| "): line for line in body.splitlines() if line.startswith("| ")}


def record(fault: str, injected: str, seen: str, lost: str = "nothing") -> None:
    """Check (or, with ``LEAP_RECORD_FAULTS=1``, write) this fault's row of docs/faults.md."""
    row = f"| {fault} | {injected} | {normalise(seen)} | {lost} |"
    if os.environ.get("LEAP_RECORD_FAULTS") == "1":
        with open(PAGE, "r+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # tests on two workers write their rows
            text = fh.read()
            rows = {k: v for k, v in _rows(text).items() if k not in ("fault", "---")}
            rows[fault] = row
            table = "\n".join([BEGIN, *HEADER, *(rows[k] for k in sorted(rows)), END])
            head, tail = (text.split(BEGIN, 1)[0], text.split(END, 1)[1]) if BEGIN in text else (text, "\n")
            fh.seek(0)
            fh.truncate()
            fh.write(head + table + tail)
        return
    committed = _rows(PAGE.read_text(encoding="utf-8")).get(fault)
    assert committed == row, (
        f"docs/faults.md's row for {fault!r} is not what the test saw; rewrite the table with "
        f"`LEAP_RECORD_FAULTS=1 pytest -k fault`\n  committed: {committed}\n  observed:  {row}"
    )


def run_limited(code: str, limit: int, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``code`` (with ``args`` in ``sys.argv[1:]``) in a fresh process whose files may not grow
    past ``limit`` bytes: RLIMIT_FSIZE, so the kernel refuses the write as a full disk would."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        preexec_fn=cap,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


ONE_LINE = """
import sys
from leap.errors import LeapError

def one_line(fn):
    try:
        fn()
    except LeapError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
"""
"""The one-line ending of a job (workflow_scripts/_bootstrap.py) for code run by :func:`run_limited`."""
