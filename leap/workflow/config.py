"""The workflow config's sections, the config itself, its schema and its checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leap.core.exit_config import ExitConfig
from leap.core.settings import dataclass_schema, from_dict, setting
from leap.errors import LeapError
from leap.training.config import TrainConfig, cpu_has_bf16

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
"""BEIR's download server (the BEIR README's links); ``data.beir_url`` replaces it with a mirror."""

SOURCE = {"type": "string", "pattern": "^(hub|local|demo):"}


@dataclass(frozen=True)
class DataConfig:
    """Sources of training sentences and evaluation sets (leap.workflow.data). Each is ``kind:name``
    with kind ``hub``, ``local`` (a data_dir folder) or ``demo`` (built-in synthetic data)."""

    train_sources: tuple[str, ...] = setting(("demo:sentences",), "training sentence sources", items=SOURCE)
    stsb: str | None = setting("demo:pairs", "STS-B source (hub:stsb, local:stsb, demo:pairs)")
    qqp: str | None = setting(None, "QQP 10K evaluation pairs of the main models (hub:qqp, demo:qqp); null skips QQP")
    retrieval: tuple[str, ...] = setting(
        (), "BEIR sets (hub:scifact, local:scifact, demo:retrieval, ...)", items=SOURCE
    )
    nli: str | None = setting(None, "labelled NLI pairs for the DeeBERT off-ramps (hub:snli, local:nli, demo:pairs)")
    data_dir: str | None = setting(None, "local data folder (set from the top-level data_dir)")
    min_chars: int = setting(20, "keep sentences longer than this after whitespace normalisation", minimum=0)
    max_sentences: int | None = setting(None, "seeded sample cap", minimum=1)
    seed: int = setting(0, "seed of the cap sample, the QQP sample and the retrieval dev split")
    demo_size: int = setting(3000, "sentences of the synthetic generator", minimum=10)
    retrieval_dev_queries: int = setting(
        300, "training queries carved into a retrieval dev split (for tuning)", minimum=1
    )
    revisions: dict[str, str] = setting(
        doc="commit of each Hub dataset by repo id; an unpinned repo is resolved once and recorded in stats.json",
        factory=dict,
    )
    beir_url: str = setting(
        BEIR_URL,
        "where hub: BEIR sets are downloaded from, {name} standing for the set (BEIR's own server, or a mirror)",
        pattern=r"\{name\}",
    )
    download_attempts: int = setting(
        4,
        "tries of each Hub or BEIR download; a transient failure (HTTP 429 or 5xx, a dropped connection, a "
        "truncated file) is tried again",
        minimum=1,
    )
    download_backoff: float = setting(
        5.0, "seconds to wait after a download's first failure, doubled after each next one", minimum=0
    )
    beir_checksums: dict[str, str] = setting(
        doc="checksum of a BEIR set's zip by set name (md5:HEX or sha256:HEX), added to or replacing BEIR's "
        "published ones (a mirror's own build); every download is checked before it is extracted",
        factory=dict,
    )

    def refs(self) -> list[str]:
        return [*self.train_sources, *(r for r in (self.stsb, self.qqp, self.nli) if r), *self.retrieval]


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher and its embedding cache (leap.training.teacher)."""

    model: str = setting("packaged:all-MiniLM-L6-v2", "hub id, local folder or packaged:all-MiniLM-L6-v2")
    batch_size: int = setting(64, "sentences per teacher batch", minimum=1)
    shard_size: int = setting(8192, "sentences per cache shard (the resume unit)", minimum=1)
    max_seq_length: int | None = setting(None, "null = the teacher's own", minimum=8)
    dtype: str | None = setting(None, "half precision on GPU", enum=[None, "float16", "bfloat16"])
    device: str | None = setting(None, "cpu or cuda (null: cuda when available)", enum=[None, "cpu", "cuda"])


@dataclass(frozen=True)
class VariantsConfig:
    """Which variants each target trains (names from leap.workflow.variants.VARIANTS or custom_variants)."""

    main: tuple[str, ...] = setting(("baseline", "leap"), "trained with every seed")
    ablation: tuple[str, ...] = setting((), "Table 11 rows")
    sweep: tuple[str, ...] = setting((), "beta sweep points (Table 12)")
    comparisons: tuple[str, ...] = setting(
        (), "fixed_depth, adaptive_layer, layerskip, and deebert (off-ramps on the baseline student)"
    )


@dataclass(frozen=True)
class EvaluationConfig:
    """Evaluation settings (STS-B, QQP, BEIR, layer analyses, DeeBERT heads, frontier)."""

    exit: ExitConfig = setting(doc="the exit rule every evaluation reports at", factory=ExitConfig)
    batch_size: int = setting(64, "encoding batch size", minimum=1)
    layer_sentences: int = setting(2000, "STS-B test sentences used by the layer analyses", minimum=20)
    retrieval_variants: tuple[str, ...] = setting(("baseline", "leap"), "variants evaluated on the BEIR sets")
    retrieval_seeds: int | None = setting(None, "BEIR on the first N seeds of each variant (null = all)", minimum=1)
    retrieval_max_seq_length: int | None = setting(
        None,
        "cap on the tokens of each retrieval text (queries and documents; long documents dominate the "
        "cost); null: each model's own max_seq_length",
        minimum=8,
    )
    heads_reference: str = setting("leap", "variant whose dev E[l] the DeeBERT entropy threshold is matched to")
    device: str = setting("cpu", "cpu or cuda", enum=["cpu", "cuda"])
    engine: str = setting(
        "torch",
        "what runs the evaluation passes on the CPU: torch, or onnx (ONNX Runtime fp32, its layer vectors checked "
        "against torch's within 1e-5 on a sample of every pass, torch where the check fails)",
        enum=["torch", "onnx"],
    )


@dataclass(frozen=True)
class LatencyConfig:
    """Table 7 (leap bench) on trained students."""

    variants: tuple[str, ...] = setting(("baseline", "leap"), "variants timed")
    batch_sizes: tuple[int, ...] = setting((1, 8, 32), "batch sizes timed", items={"minimum": 1})
    warmup: int = setting(50, "warm-up calls per path", minimum=0)
    iters: int = setting(200, "timed calls per path", minimum=1)
    rounds: int = setting(10, "interleaved rounds the timed calls are split into", minimum=1)
    tight: float | None = setting(
        None,
        "stop timing a batch size early (after 4 rounds) once every path's time relative to full depth has a "
        "95% interval within this fraction of its median (0.02: 2%); null: every round",
        minimum=0.001,
        maximum=0.5,
    )
    device: str = setting("cpu", "cpu or cuda", enum=["cpu", "cuda"])
    dtype: str | None = setting(None, "float16 / bfloat16 on GPU", enum=[None, "float16", "bfloat16"])
    seeds: int | None = setting(None, "time the first N seeds of each variant (null = all)", minimum=1)
    serving_pairs: int = setting(
        500,
        "STS-B dev pairs on which every serving path of a timed variant is measured (torch and ONNX Runtime "
        "int8: full depth, every cut, exit over serving_thetas; quality and ms/sentence; CPU only); 0 = off",
        minimum=0,
    )
    serving_thetas: tuple[float, ...] = setting(
        (0.80, 0.88, 0.93, 0.97), "exit thetas of the serving paths", items={"minimum": -1, "maximum": 1}
    )
    serving_batch_sizes: tuple[int, ...] = setting(
        (1, 32), "batch sizes the serving paths are timed at", items={"minimum": 1}
    )


@dataclass(frozen=True)
class DiagnosticConfig:
    """Exit diagnostic of published checkpoints (paper sec 5.2, Table 2)."""

    theta: float = setting(0.95, "convergence threshold", minimum=-1, maximum=1)
    patience: int = setting(1, "k, the layer gap of the convergence check", minimum=1)
    min_layer: int | None = setting(None, "l_min; null = 6 for 12+ layers, half depth below", minimum=1)
    overhead_iters: int = setting(30, "timed batch-1 calls for the monitoring overhead", minimum=1)
    sentences: str | None = setting(None, "text file, one sentence per line; null = the built-in list")


@dataclass(frozen=True)
class PublishedModel:
    """A published checkpoint: exit diagnostic (Table 2) and the frontier."""

    name: str = setting(doc="short name used in paths and tables", pattern="^[A-Za-z0-9_.-]+$")
    model: str = setting(doc="hub id, local folder, or packaged:all-MiniLM-L6-v2")
    fit_maps: int = setting(
        0,
        "exit-enable the checkpoint with least-squares per-layer maps fitted on this many training "
        "sentences (leap convert --fit-maps; results/{experiment}/published/{name}/model); 0 serves it as "
        "published (and runs its exit diagnostic)",
        minimum=0,
    )
    retrieval: bool = setting(
        True,
        "evaluate it on the config's BEIR sets (frontier included); false keeps it to STS-B, e.g. a "
        "12-layer checkpoint on a CPU budget",
    )
    retrieval_sets: tuple[str, ...] = setting(
        (),
        "only these of the config's BEIR sets (names, e.g. [nfcorpus]); empty: all of them",
        items={"type": "string"},
    )


@dataclass(frozen=True)
class WorkflowConfig:
    """Configuration of the LEAP reproduction workflow (config/README.md explains the shipped configs)."""

    experiment: str = setting("demo", "every output goes under results/{experiment}/", pattern="^[A-Za-z0-9_.-]+$")
    threads: int = setting(
        2, "torch threads per job (two torch jobs on the same cores slow each other badly)", minimum=1
    )
    gpu: bool = setting(
        False,
        "jobs that can use a GPU (teacher cache, training, evaluation, latency) ask for one "
        "(resources gpu=1, one at a time under the default profile); false on CPU machines",
    )
    keep_intermediates: bool = setting(
        True,
        "keep the extracted data, teacher caches and model folders; false deletes each once every "
        "job that reads it is done (Snakemake temp), so a run done in parts on fresh machines "
        "resumes from its committed results (README, CPU-scale reproduction)",
    )
    data_dir: str | None = setting(None, "local data folder (layout of ../shared/data) read by local:* sources")
    data: DataConfig = setting(doc="sources", factory=DataConfig)
    teacher: TeacherConfig = setting(doc="teacher and cache", factory=TeacherConfig)
    training: TrainConfig = setting(doc="training settings shared by every variant", factory=TrainConfig)
    seeds: tuple[int, ...] = setting(
        (0,), "seeds of the main variants; every other variant uses the first", items={"minimum": 0}, minItems=1
    )
    variants: VariantsConfig = setting(doc="variants per target", factory=VariantsConfig)
    variant_overrides: dict[str, Any] = setting(
        doc="per-variant training overrides, e.g. {fixed_depth: {n_layers: 4}}",
        factory=dict,
        additionalProperties={"$ref": "#/definitions/TrainConfig"},
    )
    sweep: dict[str, Any] = setting(
        doc="overrides of the beta-sweep variants (reduced data and steps)", factory=dict, ref="TrainConfig"
    )
    custom_variants: dict[str, Any] = setting(doc="new variants: {name: {base: leap, <training keys>}}", factory=dict)
    evaluation: EvaluationConfig = setting(doc="evaluation", factory=EvaluationConfig)
    latency: LatencyConfig = setting(doc="latency (Table 7)", factory=LatencyConfig)
    published_models: tuple[PublishedModel, ...] = setting(
        (), "published checkpoints: exit diagnostic (Table 2) and the frontier"
    )
    diagnostic: DiagnosticConfig = setting(doc="exit diagnostic settings", factory=DiagnosticConfig)


def workflow_schema() -> dict:
    """The workflow config's JSON schema (``config/schema.yaml``), generated from the dataclasses."""
    defs: dict[str, Any] = {}
    top = dataclass_schema(WorkflowConfig, defs)
    custom = top["properties"]["custom_variants"]
    custom["additionalProperties"] = {"type": "object", "properties": {"base": {"type": "string"}}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **top, "definitions": defs}


def validate_workflow_config(config: dict) -> WorkflowConfig:
    """Check a workflow config against :func:`workflow_schema` and build it; raises
    :class:`LeapError` listing at most five problems, one line each."""
    errors = schema_errors(config, workflow_schema())
    if errors:
        raise LeapError("invalid config:\n  " + "\n  ".join(errors))
    cfg = from_dict(WorkflowConfig, config, "config")
    sets = {ref.split(":", 1)[-1] for ref in cfg.data.retrieval}
    for m in cfg.published_models:
        unknown = sorted(set(m.retrieval_sets) - sets)
        if unknown:
            raise LeapError(
                f"invalid config: published_models[{m.name}].retrieval_sets names {unknown}, which are not "
                f"among data.retrieval ({sorted(sets) or 'none'}); use those names"
            )
    return cfg


def gpu_settings(cfg: WorkflowConfig, cpu_bf16: bool | None = None) -> list[str]:
    """The config keys that ask for a GPU, as ``key: value`` (empty: the run is CPU-only).
    ``training.precision: bf16`` asks for one only where the CPU lacks native bfloat16
    (``cpu_bf16``; None: this machine's, :func:`leap.training.config.cpu_has_bf16`)."""
    if cpu_bf16 is None:
        cpu_bf16 = cfg.training.precision == "bf16" and cpu_has_bf16()
    asks = [
        ("gpu", cfg.gpu, True),
        ("training.precision", cfg.training.precision, "fp16"),
        ("training.precision", cfg.training.precision, "bf16" if not cpu_bf16 else None),
        ("evaluation.device", cfg.evaluation.device, "cuda"),
        ("latency.device", cfg.latency.device, "cuda"),
    ]
    return [f"{key}: {str(value).lower()}" for key, value, gpu in asks if value == gpu]


def check_gpu_settings(cfg: WorkflowConfig) -> None:
    """One clear error, before any job starts, when the config asks for a GPU this machine lacks."""
    keys = gpu_settings(cfg)
    if not keys:
        return
    import torch

    if not torch.cuda.is_available():
        raise LeapError(
            f"this config asks for a GPU ({'; '.join(keys)}) but this machine has none; run it on a GPU machine, "
            "or override for a CPU run: --config gpu=false, training.precision fp32 and evaluation/latency "
            "device cpu in an overlay config"
        )


def schema_errors(config: dict, schema: dict, limit: int = 5) -> list[str]:
    """Short messages for what is wrong with ``config``: the key's path, its value and what is allowed."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))[:limit]:
        path = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        best = jsonschema.exceptions.best_match([err])
        allowed = ""
        s = best.schema if isinstance(best.schema, dict) else {}
        if "enum" in s:
            allowed = f"; allowed: {s['enum']}"
        elif "description" in s:
            allowed = f" ({s['description']})"
        if best.validator == "additionalProperties":
            props = sorted((best.schema.get("properties") or {}).keys())
            allowed = f"; known keys: {', '.join(props)}" if props else ""
        msg = best.message if len(best.message) < 160 else best.message[:157] + "..."
        out.append(f"config key {path}: {msg}{allowed}")
    return out


def main() -> None:
    """``python -m leap.workflow.config > config/schema.yaml``: the schema from the dataclasses."""
    import sys

    import yaml

    sys.stdout.write(
        "# Generated from the dataclasses of leap (leap/workflow/config.py and the exit and training settings) by\n"
        "# `python -m leap.workflow.config`; edit the dataclasses, not this file.\n"
    )
    sys.stdout.write(yaml.safe_dump(workflow_schema(), sort_keys=False, width=120))


if __name__ == "__main__":
    main()
