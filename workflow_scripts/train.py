"""Training stage: one student (adapter for leap.train)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from pathlib import Path  # noqa: E402

from leap.data import read_sentences  # noqa: E402
from leap.train import train, train_config_from_dict  # noqa: E402

p = snakemake.params  # noqa: F821
train(
    train_config_from_dict(p.train),
    read_sentences(snakemake.input.sentences),  # noqa: F821
    Path(snakemake.input.manifest).parent,  # noqa: F821
    Path(snakemake.output.config).parent,  # noqa: F821
    teacher=p.teacher,
    threads=snakemake.threads,  # noqa: F821
)
