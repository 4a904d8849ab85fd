"""A scored pair set (STS-B or QQP) on exited and full embeddings, with its frontier (adapter for
leap.workflow.evaluate)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.evaluate import run_pairs  # noqa: E402

p = snakemake.params  # noqa: F821
run_pairs(
    p.model,
    snakemake.input.pairs,
    snakemake.output.json,
    p.exit,  # noqa: F821
    batch_size=p.batch_size,
    threads=snakemake.threads,
    device=p.device,
    engine=p.engine,
)  # noqa: F821
