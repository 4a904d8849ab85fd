"""STS-B on exited and full embeddings with its frontier, and the layer analyses from the
same full pass (adapter for leap.workflow.evaluate)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.evaluate import run_stsb

p, o = snakemake.params, snakemake.output  # noqa: F821
run_stsb(
    p.model,
    snakemake.input.pairs,  # noqa: F821
    o.json,
    o.layers or None,
    p.exit,
    batch_size=p.batch_size,
    max_sentences=p.max_sentences,
    threads=snakemake.threads,  # noqa: F821
    device=p.device,
    engine=p.engine,
)
