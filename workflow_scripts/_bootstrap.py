"""Make the repository's `leap` package importable from a Snakemake script, send the
script's messages (Python logging, warnings, progress bars) to the rule's log file
(Snakemake only puts the script's own folder on sys.path; per-rule conda envs do not see
PYTHONPATH), end a problem the user can fix in one line of that log instead of a traceback,
and stop the script when the run that started it is killed."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup(snakemake) -> None:  # noqa: ANN001 - the object Snakemake injects
    root = Path(snakemake.scriptdir).parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if snakemake.log:
        log = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - lives as long as the job
        sys.stdout = sys.stderr = log
        logging.basicConfig(
            stream=log, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
        )
        logging.captureWarnings(True)
    sys.excepthook = _one_line
    from leap.workflow.runlock import watch_driver

    watch_driver()


def _one_line(kind, err, tb) -> None:  # noqa: ANN001 - sys.excepthook's signature
    """A :class:`LeapError` (bad input, a full disk, a server that keeps failing) as one line;
    anything else as Python prints it."""
    from leap.errors import LeapError

    if isinstance(err, LeapError):
        logging.getLogger("leap").error("%s", err)  # the exit status stays 1
        return
    sys.__excepthook__(kind, err, tb)
