"""One run at a time in a working folder, and no stale lock after a killed run.

Snakemake locks a working folder while it runs and leaves the lock behind when it is killed;
its lock cannot tell a live run from a dead one, so a second run gets a five-line refusal that
suggests ``--unlock`` even while the first is alive. :func:`hold_run_lock` takes a kernel lock
(``flock``) on ``.snakemake/leap-run.lock`` when the workflow is parsed: the kernel releases
it when the run's driver process ends, however it ends. So

* a second run in the same folder is refused at once, in one line naming the first;
* when the lock is free no run is alive here, and Snakemake's own locks left by a killed run
  are removed before Snakemake checks them (what ``--unlock`` would do, done only when safe).

:func:`watch_driver` makes a job's script end when the run that started it is gone, so a
killed driver leaves no job writing behind it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from leap.errors import LeapError

log = logging.getLogger(__name__)

LOCK_FILE = Path(".snakemake") / "leap-run.lock"
NO_JOBS = {
    "--dry-run",
    "--dryrun",
    "--summary",
    "--detailed-summary",
    "--list",
    "--list-rules",
    "--list-target-rules",
    "--lint",
    "--report",
    "--dag",
    "--rulegraph",
    "--filegraph",
    "--unlock",
    "--cleanup-metadata",
    "--list-changes",
    "--containerize",
}
_SHORT = re.compile(r"^-[A-Za-z]*[nDSl][A-Za-z]*$")  # -n, -np, -D, -S, -l: dry runs and listings


def runs_jobs(argv: Sequence[str]) -> bool:
    """Whether a Snakemake command line may run jobs (not a dry run, a listing or a report)."""
    return not any(a.split("=")[0] in NO_JOBS or _SHORT.match(a) for a in argv[1:])


def hold_run_lock(workdir: str | os.PathLike, argv: Sequence[str]) -> IO | None:
    """Take this folder's run lock for a command that runs jobs and return its open file (keep
    it open: the lock lasts as long as the process); ``None`` for one that runs none.

    Raises :class:`LeapError` in one line when a live run holds the lock. With the lock free,
    Snakemake's locks in ``.snakemake/locks`` are stale and removed.
    """
    path = Path(workdir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        who = fh.read().strip() or "another run"
        fh.close()
        if not runs_jobs(argv):
            return None
        raise LeapError(
            f"another snakemake run is working in {Path(workdir).resolve()} ({who}); wait for it to end or stop "
            "it, then run again"
        ) from None
    stale = Path(workdir) / ".snakemake" / "locks"
    if stale.is_dir() and any(stale.iterdir()):
        log.info("removing the locks a killed run left in %s", stale)
        shutil.rmtree(stale, ignore_errors=True)
    if not runs_jobs(argv):
        fh.close()  # releases the lock
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(argv)}\n")
    fh.flush()
    return fh


def _driver_pid() -> int | None:
    """The nearest ancestor process running Snakemake (the run that started this job)."""
    pid = os.getppid()
    while pid > 1:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if "snakemake" in cmdline:
            return pid
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent's pid (field 4)
    return None


def watch_driver(interval: float = 1.0, grace: float = 30.0) -> threading.Thread | None:
    """End this process when the Snakemake process that started it is gone: first as an
    interrupt (``finally`` blocks run, temp files go), after ``grace`` seconds for good."""
    import _thread

    driver = _driver_pid()
    if driver is None:
        return None

    def watch() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(driver, 0)
                if Path(f"/proc/{driver}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # killed, not yet reaped
            except (ProcessLookupError, FileNotFoundError):
                break
            except (PermissionError, OSError):
                continue
        log.error("the snakemake run that started this job (pid %d) is gone: stopping", driver)
        _thread.interrupt_main()
        time.sleep(grace)
        os._exit(1)

    thread = threading.Thread(target=watch, name="leap-driver-watch", daemon=True)
    thread.start()
    return thread
