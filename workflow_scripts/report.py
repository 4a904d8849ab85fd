"""claims.csv and report.md (adapter for leap.workflow.report)."""

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.workflow.report import run_report  # noqa: E402

i, o, p = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
run_report(
    i.evals,
    dict(zip(p.names, i.diagnostics)),
    i.tables,
    i.figures,
    i.stats,
    o.claims,
    o.report,
    p.experiment,
    provenance_json=i.provenance,
    pooling=p.pooling,
)
