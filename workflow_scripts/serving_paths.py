"""Every serving path of one student on STS-B dev pairs (adapter for leap.deploy.serving_paths)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.jobs import run_serving_paths  # noqa: E402

p = snakemake.params  # noqa: F821
run_serving_paths(
    snakemake.input.model,  # noqa: F821
    snakemake.input.pairs,  # noqa: F821
    snakemake.output.json,  # noqa: F821
    p.latency,
    threads=snakemake.threads,  # noqa: F821
)
