"""The reproduction of the paper: what the Snakemake workflow (``Snakefile``, ``rules/``,
``workflow_scripts/``) runs, over the library. Needs the ``workflow`` extra.

* :mod:`leap.workflow.config`, :mod:`leap.workflow.plan`, :mod:`leap.workflow.variants`: the
  workflow config, its schema, and every run it implies;
* :mod:`leap.workflow.data`: training sentences and evaluation sets from the Hub, a local
  folder or the built-in synthetic generator;
* :mod:`leap.workflow.evaluate`, :mod:`leap.workflow.jobs`, :mod:`leap.workflow.exit_heads`:
  the evaluation and measuring jobs, each writing one record (:mod:`leap.workflow.records`);
* :mod:`leap.workflow.frontier`, :mod:`leap.workflow.frontier_tables`,
  :mod:`leap.workflow.tables`, :mod:`leap.workflow.figures`: every table and figure;
* :mod:`leap.workflow.claims`, :mod:`leap.workflow.claim_measures`,
  :mod:`leap.workflow.report`, :mod:`leap.workflow.provenance`: claims versus measured, the
  report, and what code and config made them.

The library (every other subpackage of :mod:`leap`) never imports this package.
"""
