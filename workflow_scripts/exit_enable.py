"""Exit-enable a published checkpoint with least-squares per-layer maps fitted on a sample
of the training sentences (adapter for leap.deploy.convert.exit_enable_with_maps)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

import torch  # noqa: E402

from leap.deploy.convert import exit_enable_with_maps  # noqa: E402
from leap.workflow.data import read_sentences  # noqa: E402

p = snakemake.params  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
exit_enable_with_maps(
    p.model,
    snakemake.output.model,  # noqa: F821
    read_sentences(snakemake.input.sentences),  # noqa: F821
    p.n,
    seed=p.seed,
    exit=p.exit,
    device=p.device,
)
