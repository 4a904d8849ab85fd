"""Every figure whose runs exist (adapter for leap.workflow.figures)."""

from pathlib import Path

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.figures import build_figures  # noqa: E402

build_figures(
    snakemake.input.evals,
    Path(snakemake.output.index).parent,  # noqa: F821
    theta=snakemake.params.theta,
)  # noqa: F821
