"""Every table whose runs exist (adapter for leap.workflow.tables)."""

from pathlib import Path

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.tables import build_tables  # noqa: E402

i, p = snakemake.input, snakemake.params  # noqa: F821
build_tables(
    i.evals,
    Path(snakemake.output.index).parent,  # noqa: F821
    train_configs=dict(zip(p.variants, i.configs)),
    diagnostics=dict(zip(p.names, i.diagnostics)),
)
