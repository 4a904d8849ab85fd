"""Every figure whose runs exist (adapter for leap.figures)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.figures import build_figures  # noqa: E402

build_figures(snakemake.input.evals, snakemake.params.out_dir, theta=snakemake.params.theta)  # noqa: F821
