"""Data stage: sources -> filtered sentences + evaluation sets (adapter for leap.data)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from pathlib import Path  # noqa: E402

from leap.data import DataConfig, prepare_data  # noqa: E402

prepare_data(DataConfig(**snakemake.params.data), Path(snakemake.output.sentences).parent)  # noqa: F821
