"""The LEAP loss (paper Eq. 3-9) and training settings."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from leap.core.settings import from_dict, setting
from leap.errors import LeapError

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


PRECISIONS = ("fp32", "fp16", "bf16")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), so that ``bf16``
    mixed precision is faster than fp32 rather than emulated."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


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
    precision: str = setting(
        "fp32", "fp32, fp16 or bf16 (fp16 needs a GPU; bf16 a GPU or a CPU with AVX512-BF16/AMX)", enum=list(PRECISIONS)
    )
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
    objective: str = setting("leap", "training objective (leap.training.losses.OBJECTIVES)")
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
