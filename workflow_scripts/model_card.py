"""A trained student's model card with its frontier row (adapter for leap.model_card)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.model_card import write_model_card  # noqa: E402
from leap.results import load_json  # noqa: E402

i = snakemake.input  # noqa: F821
write_model_card(i.model, load_json(i.config), load_json(i.stsb), out=snakemake.output.card)  # noqa: F821
