"""Layer-wise analyses on STS-B test sentences (adapter for leap.evaluate)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.evaluate import run_layers  # noqa: E402

p = snakemake.params  # noqa: F821
run_layers(snakemake.input.model, snakemake.input.pairs, snakemake.output.json, p.exit,  # noqa: F821
           batch_size=p.batch_size, max_sentences=p.max_sentences, threads=snakemake.threads)  # noqa: F821
