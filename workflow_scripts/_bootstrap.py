"""Make the repository's `leap` package importable from a Snakemake script and send the
script's messages (Python logging, warnings, progress bars) to the rule's log file
(Snakemake only puts the script's own folder on sys.path; per-rule conda envs do not see
PYTHONPATH)."""

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
