"""DeeBERT-style off-ramps on the baseline student (adapter for leap.evaluate)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.evaluate import run_exit_heads  # noqa: E402

i, p = snakemake.input, snakemake.params  # noqa: F821
run_exit_heads(i.model, i.nli, i.pairs, i.leap, snakemake.output.json, seed=int(snakemake.wildcards.seed),  # noqa: F821
               epochs=p.epochs, batch_size=p.batch_size, threads=snakemake.threads)  # noqa: F821
