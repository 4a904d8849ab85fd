"""A scored pair set (STS-B or QQP) on exited and full embeddings (adapter for leap.evaluate)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.evaluate import run_stsb  # noqa: E402

p = snakemake.params  # noqa: F821
run_stsb(snakemake.input.model, snakemake.input.pairs, snakemake.output.json, p.exit,  # noqa: F821
         batch_size=p.batch_size, threads=snakemake.threads)  # noqa: F821
