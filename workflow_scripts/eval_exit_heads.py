"""DeeBERT-style off-ramps on the baseline student (adapter for leap.workflow.evaluate)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.exit_heads import run_exit_heads  # noqa: E402

i, p = snakemake.input, snakemake.params  # noqa: F821
run_exit_heads(
    i.model,
    i.nli,
    i.pairs,
    i.reference or None,
    snakemake.output.json,  # noqa: F821
    min_layer=p.min_layer,
    seed=int(snakemake.wildcards.seed),  # noqa: F821
    batch_size=p.batch_size,
    threads=snakemake.threads,
    device=p.device,
    engine=p.engine,
)  # noqa: F821
