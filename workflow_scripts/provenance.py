"""provenance.json: the code, commands, machine and stage times of the run (adapter for leap.workflow.provenance)."""

from pathlib import Path

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.files import write_json  # noqa: E402
from leap.workflow.provenance import build_provenance  # noqa: E402

root = Path(snakemake.scriptdir).parent  # noqa: F821
p = snakemake.params  # noqa: F821
write_json(
    snakemake.output.json,  # noqa: F821
    build_provenance(p.invocations, p.benchmarks, root / "rules", root),
)
