"""Exit diagnostic of one model -> diagnostic.json (adapter for leap.deploy.diagnose)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.jobs import diagnose_to_json  # noqa: E402

p = snakemake.params  # noqa: F821
diagnose_to_json(
    p.model,
    snakemake.output.json,  # noqa: F821
    theta=p.theta,
    patience=p.patience,
    min_layer=p.min_layer,
    overhead_iters=p.overhead_iters,
    sentences_file=p.sentences,
    threads=snakemake.threads,  # noqa: F821
)
