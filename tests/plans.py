"""What a workflow config implies, from its run plan (:class:`leap.workflow.plan.Plan`): the
job counts a dry run must show and the runs a change retrains, so that no test types them in."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from leap.workflow.plan import Plan

EVAL_RULES = {
    "stsb.json": "eval_stsb",
    "qqp.json": "eval_qqp",
    "stsb_heads.json": "eval_exit_heads",
    "latency.json": "latency_bench",
    "serving_paths.json": "serving_paths",
}


def plan_of(*config_files: str | Path, **overrides: object) -> Plan:
    """The run plan of Snakemake's ``--configfile`` files in order (each deep-merged over the
    ones before, as Snakemake does), with ``overrides`` (``--config``) on top."""
    config: dict = {}
    for f in config_files:
        config = _merge(config, yaml.safe_load(Path(f).read_text()))
    return Plan(_merge(config, overrides))


def planned_jobs(*config_files: str | Path, **overrides: object) -> dict[str, int]:
    """The training and evaluation jobs per rule that the run plan of these config files
    implies: what the Snakemake DAG must hold, derived, not typed in."""
    plan = plan_of(*config_files, **overrides)
    counts = Counter(
        "eval_beir" if Path(f).name.startswith("beir_") else EVAL_RULES[Path(f).name]
        for f in plan.all_evals
        if Path(f).name != "layers.json"  # written by eval_stsb beside stsb.json
    )
    counts |= {
        "train_student": len(plan.run_configs),
        "teacher_cache": len(plan.teachers),
        "diagnose_published": len(plan.diagnostics),
        "exit_enable_published": len(plan.fit_maps),
    }
    return {k: v for k, v in counts.items() if v}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def retrained(before: list[str | Path], after: list[str | Path]) -> set[tuple[str, int]]:
    """The (variant, seed) runs whose resolved training config the change from the config
    files ``before`` to ``after`` adds or alters: the runs a rerun must train again."""
    old, new = plan_of(*before).run_configs, plan_of(*after).run_configs
    return {run for run, cfg in new.items() if old.get(run) != cfg}
