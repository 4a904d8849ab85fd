"""Table 2 (cross-distillation check) from the diagnostic JSONs (adapter for leap.tables)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.tables import table2_cross_distillation, write_table  # noqa: E402

table = table2_cross_distillation(dict(zip(snakemake.params.names, snakemake.input.diagnostics)))  # noqa: F821
write_table(table, snakemake.output.csv, snakemake.output.md)  # noqa: F821
