"""The run plan of a workflow config: which runs, evaluations and outputs the DAG holds.

:class:`Plan` holds what the rules read (``rules/common.smk``): the validated config,
the trained variants and their seeds, every run's resolved training config, the teachers
and the students that read each teacher's layer-aligned targets, the evaluation files of
each target group, the published checkpoints and the frontier's benchmarks. The rules keep
short input functions over a ``Plan``; tests call it directly, without Snakemake.
Nothing here imports torch (parsing and dry runs stay fast).

Example:
    >>> plan = Plan(yaml.safe_load(open("config/cpu.yaml")))
    >>> len(plan.run_configs)            # (variant, seed) -> TrainConfig
    >>> plan.group_evals("main")[:2]     # the evaluation JSONs the `main` target asks for
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

from leap.core.settings import to_plain
from leap.errors import LeapError
from leap.training.config import TrainConfig
from leap.workflow.config import WorkflowConfig, validate_workflow_config
from leap.workflow.variants import make_train_config

GROUP_NAMES = ("main", "ablation", "sweep", "comparisons")
HEADS = "deebert"
"""Off-ramps on the baseline student: an evaluation of the baseline, not a training run."""


def slug(ref: str) -> str:
    """A model reference as a folder name (``packaged:`` dropped, the last path part)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(ref).removeprefix("packaged:")).name)


class Plan:
    """The plan of one workflow config (a dict as Snakemake's ``config``).

    Raises :class:`LeapError` with one line naming the problem when the config is invalid
    (schema, unknown variants, cross-key checks), before any job could run.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.raw = config
        self.cfg: WorkflowConfig = validate_workflow_config(config)
        self.results = f"results/{self.cfg.experiment}"
        self.groups = {g: list(getattr(self.cfg.variants, g)) for g in GROUP_NAMES}
        self.trained = list(dict.fromkeys(v for g in self.groups.values() for v in g if v != HEADS))
        self.published = {m.name: m.model for m in self.cfg.published_models}
        self.fit_maps = {m.name: m.fit_maps for m in self.cfg.published_models if m.fit_maps}
        self.diagnosed = [n for n in self.published if n not in self.fit_maps]  # Table 2: as published
        self.retrieval = [ref.split(":", 1)[1] for ref in self.cfg.data.retrieval]
        # frontier benchmarks: STS-B, each BEIR set with both sides exiting (the paper's), and
        # each BEIR set query-only (documents at full depth, as an index is built)
        self.benchmarks = ["STS-B", *self.retrieval, *[f"{r} (query-only)" for r in self.retrieval]]
        self._check()

    # -- checks across keys ----------------------------------------------------------------
    def _check(self) -> None:
        cfg = self.cfg
        local = [r for r in cfg.data.refs() if r.startswith("local:")]
        if local and not cfg.data_dir:
            raise LeapError(
                f"invalid config: sources {local} read a local data folder but data_dir is not set; "
                "pass --config data_dir=/path/to/data"
            )
        if local and not Path(cfg.data_dir).is_dir():
            raise LeapError(
                f"invalid config: data_dir {cfg.data_dir!r} is not a folder; point it at a local copy with "
                "the layout stsbenchmark/, nli/, mrpc/, beir/"
            )
        _ = self.run_configs  # an unknown variant, objective or key fails here first
        _ = self.pooling  # a published checkpoint that cannot be served stops the plan
        if HEADS in self.groups["comparisons"] and "baseline" not in self.trained:
            raise LeapError("invalid config: variant deebert needs the baseline variant; add baseline to variants.main")
        ref = cfg.evaluation.heads_reference
        if HEADS in self.groups["comparisons"] and ref not in self.trained:
            raise LeapError(
                f"invalid config: evaluation.heads_reference {ref!r} is not a trained variant; "
                f"choose one of {self.trained}"
            )

    @cached_property
    def pooling(self) -> dict[str, str]:
        """``{published name: how it is pooled}`` read from its files (:mod:`leap.workflow.checkpoints`);
        one line naming the checkpoint and its pooling when it cannot be served."""
        from leap.workflow.checkpoints import pooling_of

        out = {}
        for name, ref in self.published.items():
            try:
                out[name] = pooling_of(ref)
            except LeapError as err:
                raise LeapError(f"invalid config: published_models {name!r}: {err}") from None
        return out

    # -- runs -----------------------------------------------------------------------------
    def seeds_of(self, variant: str) -> list[int]:
        """Main variants run every seed; the others the first seed."""
        seeds = list(self.cfg.seeds)
        return seeds if variant in self.groups["main"] else seeds[:1]

    @cached_property
    def run_configs(self) -> dict[tuple[str, int], TrainConfig]:
        """Every run's resolved training config, ``(variant, seed) -> TrainConfig``."""
        try:
            return {
                (v, int(s)): make_train_config(
                    self.raw.get("training", {}),
                    v,
                    int(s),
                    variant_overrides=self.cfg.variant_overrides.get(v),
                    sweep=self.cfg.sweep or None,
                    custom=self.cfg.custom_variants,
                )
                for v in self.trained
                for s in self.seeds_of(v)
            }
        except LeapError as err:
            raise LeapError(f"invalid config: {err}") from None

    @cached_property
    def train_configs(self) -> dict[tuple[str, int], dict]:
        """:attr:`run_configs` as plain dicts (rule parameters)."""
        return {key: c.to_dict() for key, c in self.run_configs.items()}

    def teacher_of(self, cfg: dict) -> str:
        """The teacher a run distils from: the config's, or (``teacher: self``) its own init."""
        return cfg["student"] if cfg["teacher"] == "self" else self.cfg.teacher.model

    @cached_property
    def teachers(self) -> dict[str, str]:
        """``{cache folder name: teacher model}`` of every teacher a run reads."""
        return {slug(self.teacher_of(c)): self.teacher_of(c) for c in self.train_configs.values()}

    def cache_of(self, variant: str, seed: int | str) -> str:
        """The teacher cache folder of one run."""
        return f"{self.results}/teacher/{slug(self.teacher_of(self.train_configs[(variant, int(seed))]))}"

    def students_of(self, teacher: str) -> list[tuple]:
        """(init, depth, layer map) of every run that reads ``teacher``'s layer-aligned targets
        (the layers it caches beside the final one, which every run reads)."""
        return sorted(
            {
                (c["student"], c["n_layers"], tuple(c["loss"]["layer_map"] or ()))
                for key, c in self.train_configs.items()
                if slug(self.teacher_of(c)) == teacher and self.run_configs[key].loss.reads_aligned_targets
            },
            key=str,
        )

    # -- evaluation files -----------------------------------------------------------------
    def runs(self, variants: list[str], evals: list[str], n_seeds: int | None = None) -> list[str]:
        """Eval JSONs of ``variants``: every seed they train, or the first ``n_seeds``."""
        return [
            f"{self.results}/{v}/seed{s}/eval/{e}.json"
            for v in variants
            if v in self.trained
            for s in self.seeds_of(v)[:n_seeds]
            for e in evals
        ]

    def group_evals(self, group: str) -> list[str]:
        """The evaluation JSONs a target group (``main``, ``ablation``, ...) asks for."""
        ev = self.cfg.evaluation
        trained = [v for v in self.groups[group] if v != HEADS]
        out = self.runs(trained, ["stsb", "layers"])
        if self.cfg.data.qqp and group == "main":  # QQP 10K pairs: the main models (Table 1)
            out += self.runs(trained, ["qqp"])
        retrieval = [v for v in self.groups[group] if v in ev.retrieval_variants]
        out += self.runs(retrieval, [f"beir_{r}" for r in self.retrieval], ev.retrieval_seeds)
        if HEADS in self.groups[group]:
            out += [f"{self.results}/{HEADS}/seed{s}/eval/stsb_heads.json" for s in self.seeds_of(HEADS)]
        return out

    @cached_property
    def published_evals(self) -> list[str]:
        """STS-B, and the BEIR sets each published checkpoint is evaluated on."""
        out = []
        for m in self.cfg.published_models:
            sets = [r for r in self.retrieval if m.retrieval and (not m.retrieval_sets or r in m.retrieval_sets)]
            out += [f"{self.results}/published/{m.name}/eval/{e}.json" for e in ["stsb", *(f"beir_{r}" for r in sets)]]
        return out

    @cached_property
    def shared_vectors(self) -> dict[tuple[str, str], str]:
        """``{(published name, BEIR set): layer-vector file}`` for the sets that two or more
        published entries of one checkpoint (as published, and exit-enabled here with fitted
        maps) are evaluated on: the maps act after pooling, so the raw vectors of every layer
        are the same for each, and one job computes them for all (rule ``published_vectors``)."""
        users: dict[tuple[str, str], list[str]] = {}
        for path in self.published_evals:
            name, file = path.split("/published/", 1)[1].split("/eval/")
            if file.startswith("beir_"):
                users.setdefault((slug(self.published[name]), file.removesuffix(".json")), []).append(name)
        return {
            (name, key[1].removeprefix("beir_")): f"{self.results}/layer_vectors/{key[0]}/{key[1]}.safetensors"
            for key, names in users.items()
            if len(names) > 1
            for name in names
        }

    @cached_property
    def vector_models(self) -> dict[str, str]:
        """``{checkpoint slug: model reference}`` of the shared layer vectors."""
        return {slug(self.published[n]): self.published[n] for n, _ in self.shared_vectors}

    def vectors_of(self, run: str, dataset: str) -> list[str]:
        """The shared layer-vector file a BEIR evaluation of ``run`` reads (none: it encodes)."""
        name = run.split("/", 1)[1] if run.startswith("published/") else None
        path = self.shared_vectors.get((name, dataset)) if name else None
        return [path] if path else []

    @cached_property
    def latency(self) -> dict:
        return to_plain(self.cfg.latency)

    @cached_property
    def latency_runs(self) -> list[str]:
        variants = [v for v in self.latency["variants"] if v in self.trained]
        serving = self.latency["serving_pairs"] > 0 and self.latency["device"] == "cpu"  # ONNX Runtime: CPU
        return self.runs(variants, ["latency", *(["serving_paths"] if serving else [])], self.latency["seeds"])

    @cached_property
    def all_evals(self) -> list[str]:
        """Every evaluation JSON of the run (what tables, figures and the report read)."""
        groups = [p for g in self.groups for p in self.group_evals(g)]
        return sorted(set(groups + self.latency_runs + self.published_evals))

    @cached_property
    def diagnostics(self) -> list[str]:
        return [f"{self.results}/published/{n}/eval/diagnostic.json" for n in self.diagnosed]

    @cached_property
    def model_cards(self) -> list[str]:
        return [
            f"{self.results}/{v}/seed{s}/model_card.md"
            for v in self.groups["main"]
            if v in self.trained
            for s in self.seeds_of(v)
        ]

    @cached_property
    def run_outputs(self) -> list[str]:
        """Every file the tables, figures and report read that a training or evaluation job
        writes (not the tables themselves): what a run done in parts still lacks is the
        subset not on disk (the workflow's ``pending_runs`` target)."""
        configs = [f"{self.results}/{v}/seed{s}/train_config.json" for v in self.trained for s in self.seeds_of(v)]
        return sorted(set(self.all_evals + self.diagnostics + self.model_cards + configs))

    # -- the model an evaluation reads ------------------------------------------------------
    def model_of(self, run: str) -> str:
        """The model a ``{run}`` evaluates: a trained student's folder, a published checkpoint,
        or a published checkpoint exit-enabled here with fitted maps."""
        if run.startswith("published/") and run.split("/", 1)[1] not in self.fit_maps:
            return self.published[run.split("/", 1)[1]]
        return f"{self.results}/{run}/model"

    def model_input(self, run: str) -> list[str]:
        """A model folder made by the workflow is an input (a published checkpoint is not a file here)."""
        if run.startswith("published/") and run.split("/", 1)[1] not in self.fit_maps:
            return []
        return [f"{self.results}/{run}/model"]
