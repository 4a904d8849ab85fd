"""Data stage: sources -> filtered sentences + evaluation sets (adapter for leap.workflow.data)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from pathlib import Path  # noqa: E402

from leap.core.settings import from_dict
from leap.workflow.config import DataConfig  # noqa: E402
from leap.workflow.data import prepare_data  # noqa: E402

prepare_data(from_dict(DataConfig, snakemake.params.data, "data"), Path(snakemake.output.sentences).parent)  # noqa: F821
