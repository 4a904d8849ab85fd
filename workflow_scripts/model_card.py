"""A trained student's model card with its frontier row (adapter for leap.workflow.model_card)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.model_card import write_card_with_frontier  # noqa: E402
from leap.workflow.results import load_json  # noqa: E402

i = snakemake.input  # noqa: F821
write_card_with_frontier(i.model, load_json(i.config), load_json(i.stsb), out=snakemake.output.card)  # noqa: F821
