"""Table 7 latency of one student, truncation depths beside (adapter for leap.deploy.bench)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.jobs import run_bench  # noqa: E402

p = snakemake.params  # noqa: F821
run_bench(snakemake.input.model, snakemake.output.json, p.exit, p.bench, threads=snakemake.threads)  # noqa: F821
