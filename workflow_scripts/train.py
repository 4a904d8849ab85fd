"""Training stage: one student (adapter for leap.training)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from pathlib import Path  # noqa: E402

from leap.core.exit_config import ExitConfig  # noqa: E402
from leap.training.config import TrainConfig
from leap.training.run import train  # noqa: E402
from leap.workflow.data import read_sentences  # noqa: E402

p = snakemake.params  # noqa: F821
train(
    TrainConfig.from_dict(p.train),
    read_sentences(snakemake.input.sentences),  # noqa: F821
    Path(snakemake.input.manifest).parent,  # noqa: F821
    Path(snakemake.output.config).parent,  # noqa: F821
    teacher=p.teacher,
    exit=ExitConfig.from_dict(p.exit),
    threads=snakemake.threads,  # noqa: F821
    progress_bar=False,
)
