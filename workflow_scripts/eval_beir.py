"""BEIR retrieval, full and early exit, with its frontier (adapter for leap.workflow.evaluate)."""

from pathlib import Path

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.evaluate import run_beir  # noqa: E402

p = snakemake.params  # noqa: F821
run_beir(
    p.model,
    Path(snakemake.input.corpus).parent,
    snakemake.output.json,
    p.exit,  # noqa: F821
    batch_size=p.batch_size,
    max_seq_length=p.max_seq_length,
    threads=snakemake.threads,
    device=p.device,
    engine=p.engine,
    vectors=p.vectors[0] if p.vectors else None,  # shared with another evaluation of this checkpoint
)  # noqa: F821
