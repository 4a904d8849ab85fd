"""The layer vectors of one checkpoint over one BEIR set, shared by its evaluations with and
without fitted maps (adapter for leap.workflow.evaluate)."""

from pathlib import Path

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.layer_vectors import run_layer_vectors  # noqa: E402

p = snakemake.params  # noqa: F821
run_layer_vectors(
    p.model,
    Path(snakemake.input.corpus).parent,  # noqa: F821
    snakemake.output.vectors,  # noqa: F821
    batch_size=p.batch_size,
    max_seq_length=p.max_seq_length,
    threads=snakemake.threads,  # noqa: F821
    device=p.device,
    engine=p.engine,
)
