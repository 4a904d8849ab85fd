"""The frontier table, its summary and one figure per benchmark (adapter for leap.workflow.tables
and leap.workflow.figures)."""

from pathlib import Path

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.figures import build_frontier_figures  # noqa: E402
from leap.workflow.frontier_tables import build_frontier_tables  # noqa: E402

o = snakemake.output  # noqa: F821
build_frontier_tables(snakemake.input.evals, Path(o.table).parent)  # noqa: F821
build_frontier_figures(snakemake.input.evals, Path(o.figures[0]).parent, benchmarks=snakemake.params.benchmarks)  # noqa: F821
