"""Every setting of the package and the workflow, with its default, in one place.

The dataclasses below are the single source of truth: their field defaults are the
defaults everywhere (Python API, command line, workflow), their field docs are the
documentation, and the workflow's JSON schema (``config/schema.yaml``) is generated from
them (:func:`workflow_schema`; ``python -m leap.config > config/schema.yaml``, checked by
a test). This module imports no torch, so the Snakefile parses quickly.

Names that mean different things are kept apart: ``ExitConfig.min_layer`` is the exit
rule's ``l_min`` (Eq. 6); ``LeapLossConfig.focus_layer`` is the first layer of the loss's
"late layer focus" (``w_l`` and the default L_cross layers); the report maps paper layers
to student layers by relative depth (:func:`leap.claim_measures.paper_layer_to_student`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Union

from leap.errors import LeapError


def setting(default: Any = dataclasses.MISSING, doc: str = "", factory: Any = None, **schema: Any) -> Any:
    """A dataclass field with its documentation and extra JSON-schema constraints."""
    meta = {"doc": doc, "schema": schema}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# -- the exit rule -----------------------------------------------------------------------------
STRATEGIES = ("convergence", "pabee", "truncate", "none")
EXIT_CONFIG_FILE = "leap_exit.json"
"""The exit rule saved in an exit-enabled model folder (:meth:`ExitConfig.save`)."""


def default_min_layer(num_layers: int) -> int:
    """``l_min`` when none is given: 6 (the paper's) for 12+ layers, half depth below.

    The one place this default is decided: Python, CLI and workflow all resolve
    ``ExitConfig(min_layer=None)`` through it.
    """
    return max(1, min(6, num_layers // 2))


@dataclass(frozen=True)
class ExitConfig:
    """The exit rule (paper Algorithm 1, Eq. 6, Table 10)."""

    strategy: str = setting(
        "convergence",
        "convergence (Eq. 6), pabee (Table 10), truncate (every sample stops at min_layer) or none (full depth)",
        enum=list(STRATEGIES),
    )
    theta: float = setting(0.95, "convergence threshold on cos(p_l, p_{l-k})", minimum=-1, maximum=1)
    patience: int = setting(1, "k: the convergence check compares layer l with l-k", minimum=1)
    min_layer: int | None = setting(
        None, "l_min, the first layer a sample may exit at; null = 6 for 12+ layers, half depth below", minimum=1
    )
    pabee_theta: float = setting(0.99, "PABEE agreement threshold on cos(p_l, p_{l-1})", minimum=-1, maximum=1)
    pabee_patience: int = setting(3, "consecutive agreeing layers PABEE needs to exit", minimum=1)
    monitor_only: bool = setting(False, "run every check but never exit (measures monitoring overhead)")

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise LeapError(f"unknown exit strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not -1.0 <= float(self.theta) <= 1.0:
            raise LeapError(f"theta must lie in [-1, 1] (a cosine threshold), got {self.theta}")
        if not -1.0 <= float(self.pabee_theta) <= 1.0:
            raise LeapError(f"pabee_theta must lie in [-1, 1] (a cosine threshold), got {self.pabee_theta}")
        if int(self.patience) < 1:
            raise LeapError(f"patience (k) must be >= 1, got {self.patience}")
        if int(self.pabee_patience) < 1:
            raise LeapError(f"pabee_patience must be >= 1, got {self.pabee_patience}")
        if self.min_layer is not None and int(self.min_layer) < 1:
            raise LeapError(f"min_layer must be >= 1 (layer 0 is the embedding output), got {self.min_layer}")

    def resolve(self, num_layers: int) -> ExitConfig:
        """This rule for a ``num_layers``-deep model: ``min_layer`` filled in and checked."""
        cfg = self if self.min_layer is not None else replace(self, min_layer=default_min_layer(num_layers))
        if cfg.strategy != "none" and not 1 <= cfg.min_layer <= num_layers:
            raise LeapError(
                f"min_layer must lie in 1..{num_layers} for this {num_layers}-layer model, got {cfg.min_layer}"
            )
        return cfg

    def first_pooled_layer(self) -> int:
        """The first layer whose pooled vector the rule ever reads (earlier ones are skipped)."""
        if self.min_layer is None:
            raise LeapError("resolve the exit config against the model's depth first (ExitConfig.resolve)")
        if self.strategy == "convergence":
            return max(1, self.min_layer - self.patience)
        if self.strategy == "pabee":
            return 1
        if self.strategy == "truncate":
            return self.min_layer
        return 10**9

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "monitor_only"}

    @classmethod
    def from_dict(cls, d: dict) -> ExitConfig:
        return from_dict(cls, d, "exit")

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write ``leap_exit.json`` into a model folder (``extra``: e.g. a calibration record)."""
        from leap.files import write_json

        path = Path(folder) / EXIT_CONFIG_FILE
        write_json(path, {**self.to_dict(), **(extra or {})})
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ExitConfig | None:
        """The rule saved in ``folder``, or ``None`` when it has none (other keys, such as a
        calibration record, are ignored here; :func:`read_exit_file` returns everything)."""
        d = read_exit_file(folder)
        if d is None:
            return None
        return cls.from_dict({k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})


def read_exit_file(folder: str | os.PathLike) -> dict | None:
    """The whole ``leap_exit.json`` of a model folder, or ``None``."""
    import json

    path = Path(folder) / EXIT_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LeapError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); fix or delete it") from None


# -- the LEAP loss ---------------------------------------------------------------------------
TERMS = ("final", "inter", "exit", "contrast", "late", "redund", "depth", "cross")
PAPER_TERMS = TERMS[:6]  # Eq. 7
EXIT_MARGINS = ("sigmoid", "softplus")


@dataclass(frozen=True)
class LeapLossConfig:
    """Weights and settings of the LEAP loss (paper Eq. 3, 7); defaults are the paper's, or our
    reading where it is open."""

    alpha: float = setting(0.3, "weight of L_inter", minimum=0)
    beta: float = setting(0.4, "weight of L_exit", minimum=0)
    delta: float = setting(0.3, "weight of L_contrast", minimum=0)
    eps: float = setting(0.2, "weight of L_late", minimum=0)
    gamma: float = setting(0.05, "weight of L_redund", minimum=0)
    tau: float = setting(0.98, "training exit target on cosine (Eq. 4, 5)", exclusiveMinimum=0, maximum=1)
    beta_s: float = setting(0.7, "weight of L_exit_s at the end of its ramp", minimum=0)
    tau_c: float = setting(0.05, "temperature of L_contrast and L_cross", exclusiveMinimum=0)
    redund_margin: float = setting(0.1, "margin m of L_redund (Eq. 9)", minimum=0)
    layer_weights: tuple[float, ...] | None = setting(
        None, "w_l per student layer; null = 1.0 from focus_layer on, 0.1 below", items={"minimum": 0}
    )
    focus_layer: int = setting(6, "first layer of the late-layer focus (w_l = 1 from here; 6 in the paper)", minimum=1)
    progressive: tuple[float, float] | None = setting(
        (0.1, 0.6),
        "(start, end) of the beta_s ramp as fractions of training; null = beta_s throughout",
        items={"minimum": 0, "maximum": 1},
        minItems=2,
        maxItems=2,
    )
    terms: tuple[str, ...] = setting(PAPER_TERMS, "which loss terms are on", items={"enum": list(TERMS)})
    exit_slope: float = setting(
        10.0, "slope of the soft margin sigmoid(slope (tau - cos)) (paper: 10)", exclusiveMinimum=0
    )
    exit_margin: str = setting(
        "sigmoid",
        "soft margin of the exit terms: sigmoid (paper) or softplus(slope gap)/slope (not in the paper)",
        enum=list(EXIT_MARGINS),
    )
    exit_s_target: str = setting(
        "final",
        "what L_exit_s pulls layer l toward: final (paper) or next (sg(e^(l+1)); not in the paper)",
        enum=["final", "next"],
    )
    layer_map: tuple[int, ...] | None = setting(
        None, "teacher layer for each student layer; null = uniform round(l L_t / L_s)", items={"minimum": 1}
    )
    late_layers: tuple[int, ...] | None = setting(
        None, "student layers of L_late; null = the three below the last", items={"minimum": 1}
    )
    depth_weight: float = setting(
        1.0, "weight of L_depth, mapped exit layers distilled to the final one (not in the paper)", minimum=0
    )
    cross_weight: float = setting(
        10.0, "weight of L_cross, cross-depth relational distillation (not in the paper)", minimum=0
    )
    cross_layers: tuple[int, ...] | None = setting(
        None,
        "exit layers of L_depth and L_cross (the last is added for L_cross); null = focus_layer - 1 .. L_s - 1",
        items={"minimum": 1},
    )

    def __post_init__(self) -> None:
        for name in (
            "alpha",
            "beta",
            "delta",
            "eps",
            "gamma",
            "beta_s",
            "redund_margin",
            "depth_weight",
            "cross_weight",
        ):
            if getattr(self, name) < 0:
                raise LeapError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.tau <= 1:
            raise LeapError(f"tau must lie in (0, 1], got {self.tau}")
        if self.tau_c <= 0:
            raise LeapError(f"tau_c must be > 0, got {self.tau_c}")
        if self.exit_slope <= 0:
            raise LeapError(f"exit_slope must be > 0, got {self.exit_slope}")
        if self.exit_margin not in EXIT_MARGINS:
            raise LeapError(f"exit_margin must be one of {', '.join(EXIT_MARGINS)}, got {self.exit_margin!r}")
        if self.exit_s_target not in ("final", "next"):
            raise LeapError(f"exit_s_target must be final or next, got {self.exit_s_target!r}")
        unknown = set(self.terms) - set(TERMS)
        if unknown:
            raise LeapError(f"unknown loss terms {sorted(unknown)}; known: {', '.join(TERMS)}")
        if self.layer_weights is not None and any(w < 0 for w in self.layer_weights):
            raise LeapError(f"layer_weights must be >= 0, got {list(self.layer_weights)}")
        if self.progressive is not None:
            a, b = self.progressive
            if not 0 <= a <= b <= 1:
                raise LeapError(f"progressive must be (start, end) with 0 <= start <= end <= 1, got {self.progressive}")
        if self.focus_layer < 1:
            raise LeapError(f"focus_layer must be >= 1, got {self.focus_layer}")

    # -- derived quantities ---------------------------------------------------------------
    @property
    def reads_aligned_targets(self) -> bool:
        """Whether the loss reads the teacher's layer-aligned targets ``pi(l)`` (``L_inter``,
        which has no equation number); without it only the teacher's final layer is read."""
        return "inter" in self.terms

    def weights(self, n_layers: int) -> list[float]:
        """``w_l`` for l = 1..L_s (our reading: 1.0 from ``focus_layer`` on, 0.1 below)."""
        if self.layer_weights is not None:
            if len(self.layer_weights) != n_layers:
                raise LeapError(f"layer_weights has {len(self.layer_weights)} entries for a {n_layers}-layer student")
            return [float(w) for w in self.layer_weights]
        return [1.0 if l >= self.focus_layer else 0.1 for l in range(1, n_layers + 1)]

    def mapping(self, n_student: int, n_teacher: int) -> list[int]:
        """``pi(l)`` for l = 1..L_s: ``layer_map`` or the uniform ``round(l L_t / L_s)``."""
        if self.layer_map is not None:
            if len(self.layer_map) != n_student:
                raise LeapError(f"layer_map has {len(self.layer_map)} entries for a {n_student}-layer student")
            return [int(t) for t in self.layer_map]
        return uniform_layer_map(n_student, n_teacher)

    def late(self, n_layers: int) -> list[int]:
        """Student layers of L_late (9..11 of 12 in the paper: the three below the last)."""
        if self.late_layers is not None:
            bad = [l for l in self.late_layers if not 1 <= l < n_layers]
            if bad:
                raise LeapError(f"late_layers {bad} outside 1..{n_layers - 1}")
            return list(self.late_layers)
        return list(range(max(1, n_layers - 3), n_layers))

    def exit_layers(self, n_layers: int) -> list[int]:
        """The exit layers ``E`` of L_depth and L_cross: ``cross_layers`` or every layer the
        exit rule at patience 1 reads below the last (``focus_layer - 1 .. L_s - 1``)."""
        if self.cross_layers is not None:
            layers = list(self.cross_layers)
        else:
            layers = list(range(max(1, self.focus_layer - 1), n_layers))
        bad = [l for l in layers if not 1 <= l < n_layers]
        if bad:
            raise LeapError(f"cross_layers {bad} outside 1..{n_layers - 1}")
        return sorted(set(layers))

    def beta_s_at(self, progress: float) -> float:
        """Progressive schedule: 0 before ``start``, linear to ``beta_s`` at ``end``, then flat."""
        if self.progressive is None:
            return self.beta_s
        a, b = self.progressive
        if progress < a:
            return 0.0
        if progress >= b or b == a:
            return self.beta_s
        return self.beta_s * (progress - a) / (b - a)


def uniform_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """``pi(l) = round(l L_t / L_s)`` (half up), l = 1..L_s; 24 -> 12 gives ``2l``."""
    return [int(math.floor(l * n_teacher / n_student + 0.5)) for l in range(1, n_student + 1)]


# -- training ----------------------------------------------------------------------------------
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs (config key ``training`` plus a variant's overrides)."""

    student: str = setting(
        "packaged:all-MiniLM-L6-v2", "student initialisation: hub id, local folder or packaged:all-MiniLM-L6-v2"
    )
    random_init: bool = setting(False, "keep architecture and tokenizer, re-initialise the weights")
    n_layers: int | None = setting(None, "student depth (first layers of the init); null = all", minimum=1)
    epochs: float = setting(1.0, "passes over the training sentences", exclusiveMinimum=0)
    batch_size: int = setting(32, "sentences per optimiser step", minimum=1)
    lr: float = setting(5e-5, "peak learning rate (AdamW, linear decay)", exclusiveMinimum=0)
    warmup_ratio: float = setting(0.1, "linear warm-up as a fraction of the steps", minimum=0, exclusiveMaximum=1)
    weight_decay: float = setting(0.01, "AdamW weight decay", minimum=0)
    seed: int = setting(0, "training seed (set per run by the workflow)", minimum=0)
    max_steps: int | None = setting(None, "stop after this many steps (null = epochs decide)", minimum=1)
    precision: str = setting("fp32", "fp32, fp16 or bf16 (mixed precision needs a GPU)", enum=list(PRECISIONS))
    max_seq_length: int = setting(
        128,
        "student truncation while training (the saved model keeps the longer of this and its init's own)",
        minimum=8,
    )
    max_samples: int | None = setting(None, "train on the first N cached sentences (null = all)", minimum=1)
    checkpoint_steps: int | None = setting(None, "save a resumable checkpoint every N steps (null = none)", minimum=1)
    log_steps: int = setting(10, "a train_log.jsonl line every N steps", minimum=1)
    projection_init: str = setting(
        "lstsq", "initialisation of the projection P: lstsq or random", enum=["lstsq", "random"]
    )
    projection_lr: float | None = setting(
        None, "learning rate of P and of trained layer maps (null = lr)", exclusiveMinimum=0
    )
    objective: str = setting("leap", "training objective (leap.losses.OBJECTIVES)")
    layerskip_p_max: float = setting(0.1, "p_max of the layerskip objective's layer dropout", minimum=0, maximum=1)
    layer_maps: str | None = setting(
        None,
        "per-layer maps into the last layer's space saved with the model: null, trained (jointly, in the "
        "loss) or lstsq (fitted after training); not in the paper",
        enum=[None, "trained", "lstsq"],
    )
    layer_maps_fit: int = setting(4000, "training sentences the lstsq layer maps are fitted on", minimum=2)
    teacher: str | None = setting(
        None,
        "null = the config's teacher; self = the student's own initialisation (self-distillation: the "
        "targets are the init's own final-layer embeddings, so an existing model is exit-enabled without "
        "another model)",
    )
    loss: LeapLossConfig = setting(doc="the LEAP loss", factory=LeapLossConfig)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise LeapError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.projection_init not in ("lstsq", "random"):
            raise LeapError(f"projection_init must be lstsq or random, got {self.projection_init!r}")
        for name in ("epochs", "batch_size", "lr", "log_steps"):
            if getattr(self, name) <= 0:
                raise LeapError(f"training {name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_ratio", "weight_decay", "layerskip_p_max"):
            if getattr(self, name) < 0:
                raise LeapError(f"training {name} must be >= 0, got {getattr(self, name)}")
        if self.warmup_ratio >= 1:
            raise LeapError(f"warmup_ratio must be below 1 (a fraction of the steps), got {self.warmup_ratio}")
        if self.layer_maps not in (None, "trained", "lstsq"):
            raise LeapError(f"layer_maps must be null, trained or lstsq, got {self.layer_maps!r}")
        if self.n_layers is not None and self.n_layers < 1:
            raise LeapError(f"n_layers must be >= 1, got {self.n_layers}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return from_dict(cls, d, "training")


# -- workflow sections -------------------------------------------------------------------------
SOURCE = {"type": "string", "pattern": "^(hub|local|demo):"}


@dataclass(frozen=True)
class DataConfig:
    """Sources of training sentences and evaluation sets (leap.data). Each is ``kind:name``
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

    def refs(self) -> list[str]:
        return [*self.train_sources, *(r for r in (self.stsb, self.qqp, self.nli) if r), *self.retrieval]


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher and its embedding cache (leap.teacher)."""

    model: str = setting("packaged:all-MiniLM-L6-v2", "hub id, local folder or packaged:all-MiniLM-L6-v2")
    batch_size: int = setting(64, "sentences per teacher batch", minimum=1)
    shard_size: int = setting(8192, "sentences per cache shard (the resume unit)", minimum=1)
    max_seq_length: int | None = setting(None, "null = the teacher's own", minimum=8)
    dtype: str | None = setting(None, "half precision on GPU", enum=[None, "float16", "bfloat16"])
    device: str | None = setting(None, "cpu or cuda (null: cuda when available)", enum=[None, "cpu", "cuda"])


@dataclass(frozen=True)
class VariantsConfig:
    """Which variants each target trains (names from leap.variants.VARIANTS or custom_variants)."""

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


@dataclass(frozen=True)
class LatencyConfig:
    """Table 7 (leap bench) on trained students."""

    variants: tuple[str, ...] = setting(("baseline", "leap"), "variants timed")
    batch_sizes: tuple[int, ...] = setting((1, 8, 32), "batch sizes timed", items={"minimum": 1})
    warmup: int = setting(50, "warm-up calls per path", minimum=0)
    iters: int = setting(200, "timed calls per path", minimum=1)
    rounds: int = setting(10, "interleaved rounds the timed calls are split into", minimum=1)
    device: str = setting("cpu", "cpu or cuda", enum=["cpu", "cuda"])
    dtype: str | None = setting(None, "float16 / bfloat16 on GPU", enum=[None, "float16", "bfloat16"])
    seeds: int | None = setting(None, "time the first N seeds of each variant (null = all)", minimum=1)


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


# -- dict <-> dataclass --------------------------------------------------------------------------
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), True  # noqa: UP007 - built at run time
    return tp, False


def _convert(tp: Any, value: Any, where: str) -> Any:
    tp, _ = _strip_optional(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, where) for v in value)
    return value


def from_dict(cls: type, d: dict, where: str = "") -> Any:
    """``cls(**d)`` with nested dataclasses and tuples built, and unknown keys named."""
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise LeapError(f"{where or cls.__name__}: expected a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise LeapError(f"{where or cls.__name__}: unknown keys {unknown}; known: {', '.join(sorted(known))}")
    hints = _hints(cls)
    return cls(**{k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in d.items()})


def to_plain(obj: Any) -> Any:
    """A dataclass (or nested structure) as JSON-ready dicts and lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


# -- JSON schema -----------------------------------------------------------------------------------
_SCALARS = {int: "integer", float: "number", bool: "boolean", str: "string"}


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict:
    tp, optional = _strip_optional(tp)
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            defs[name] = dataclass_schema(tp, defs)
        ref = {"$ref": f"#/definitions/{name}"}
        return {"anyOf": [ref, {"type": "null"}]} if optional else ref
    origin = typing.get_origin(tp)
    if tp in _SCALARS:
        t = _SCALARS[tp]
        return {"type": [t, "null"] if optional else t}
    if origin is tuple:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        s = {"type": ["array", "null"] if optional else "array"}
        if args:
            s["items"] = _type_schema(args[0], defs)
        return s
    if origin is dict:
        _, val = typing.get_args(tp)
        s = {"type": ["object", "null"] if optional else "object"}
        if val is not Any:
            s["additionalProperties"] = _type_schema(val, defs)
        return s
    return {}


def dataclass_schema(cls: type, defs: dict[str, Any] | None = None) -> dict:
    """JSON schema of a config dataclass: every field optional (defaults fill in), unknown
    keys rejected, the field docs as descriptions, defaults from the dataclass."""
    defs = {} if defs is None else defs
    hints = _hints(cls)
    props = {}
    defaults = (
        to_plain(cls())
        if all(
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING for f in fields(cls)
        )
        else {}
    )
    for f in fields(cls):
        s = _type_schema(hints[f.name], defs)
        extra = dict(f.metadata.get("schema", {}))
        if "ref" in extra:
            s = {"$ref": f"#/definitions/{extra.pop('ref')}"}
        items = extra.pop("items", None)
        if items:
            s.setdefault("items", {}).update(items)
        if "enum" in extra:
            s.pop("type", None)
        s.update(extra)
        if f.metadata.get("doc"):
            s["description"] = f.metadata["doc"]
        if f.name in defaults and not dataclasses.is_dataclass(_strip_optional(hints[f.name])[0]) and "$ref" not in s:
            s["default"] = defaults[f.name]
        props[f.name] = s
    doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    out = {"type": "object", "additionalProperties": False, "description": doc, "properties": props}
    required = [
        f.name for f in fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if required:
        out["required"] = required
    return out


def workflow_schema() -> dict:
    """The workflow config's JSON schema (``config/schema.yaml``), generated from the dataclasses."""
    defs: dict[str, Any] = {}
    top = dataclass_schema(WorkflowConfig, defs)
    custom = top["properties"]["custom_variants"]
    custom["additionalProperties"] = {"type": "object", "properties": {"base": {"type": "string"}}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **top, "definitions": defs}


def schema_errors(config: dict, schema: dict | None = None, limit: int = 5) -> list[str]:
    """Short messages for what is wrong with ``config``: the key's path, its value and what is allowed."""
    import jsonschema

    schema = schema or workflow_schema()
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


def validate_workflow_config(config: dict) -> WorkflowConfig:
    """Check a workflow config against :func:`workflow_schema` and build it; raises
    :class:`LeapError` listing at most five problems, one line each."""
    errors = schema_errors(config)
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


def gpu_settings(cfg: WorkflowConfig) -> list[str]:
    """The config keys that ask for a GPU, as ``key: value`` (empty: the run is CPU-only)."""
    asks = [
        ("gpu", cfg.gpu, True),
        ("training.precision", cfg.training.precision, "fp16"),
        ("training.precision", cfg.training.precision, "bf16"),
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


if __name__ == "__main__":  # python -m leap.config > config/schema.yaml
    import sys

    import yaml

    sys.stdout.write(
        "# Generated from leap/config.py by `python -m leap.config`; edit the dataclasses, not this file.\n"
    )
    sys.stdout.write(yaml.safe_dump(workflow_schema(), sort_keys=False, width=120))
