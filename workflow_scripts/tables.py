"""Every table whose runs exist (adapter for leap.tables)."""

from pathlib import Path

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.tables import build_tables  # noqa: E402

i, p = snakemake.input, snakemake.params  # noqa: F821
build_tables(i.evals, p.out_dir, train_configs=dict(zip(p.variants, i.configs)),
             diagnostics=dict(zip(p.names, i.diagnostics)))
assert Path(snakemake.output.index).exists()  # noqa: F821
