"""Training every student the paper compares (paper sec 4.1, B.2, G; SPEC "Training setup").

Training runs on sentence-transformers' ``SentenceTransformerTrainer`` (HF ``Trainer``
underneath: optimiser, schedule, checkpoints, resume, DDP). The dataset has two columns,
``sentence`` and ``label`` (the sentence's row in the teacher cache); the loss module looks
the teacher targets up in the cache, so the teacher never runs during training.

Objectives (``TrainConfig.objective``):

- ``"leap"``: :func:`leap.losses.leap_loss` with ``loss.terms`` on. The baseline, the
  Table 11 ablation rows, the beta sweep and the fixed-depth student are all this
  objective with other configs (:data:`VARIANTS`).
- ``"adaptive_layer"``: sentence-transformers' own ``AdaptiveLayerLoss`` around
  :class:`ProjectedCosineLoss` (``1 - cos(P e_s, e_t^(L_t))``, widths matched by the same
  learned projection ``P`` as LEAP's), library default arguments.
- ``"layerskip"``: LayerSkip adapted to embeddings (SPEC "Beyond the paper"): per-sample
  layer dropout ``p_l = p_max l / L_s`` while training plus
  ``sum_l s_l (1 - cos(P e_s^(l), e_t^(L_t)))``, ``s_l = l / sum_j j``, on top of the baseline terms.

Output of :func:`train` in ``out_dir``: ``model/`` (a SentenceTransformer folder,
safetensors), ``projection.safetensors`` (``P``, not part of the inference model),
``train_config.json`` (the resolved config) and ``train_log.jsonl`` (every loss term,
``beta_s``, ``lr`` and ``step``). Checkpoints go to ``out_dir/checkpoints``; each records the
run's fingerprint (resolved config, teacher, sentences' checksum) and the log so far. A rerun
resumes from the last checkpoint only when the fingerprint matches (checkpoints of another
run are discarded, with a message) and a completed run removes its checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leap.errors import LeapError
from leap.files import atomic_path, write_json
from leap.losses import ABLATION_TERMS, ALL_TERMS, BASELINE_TERMS, LeapLossConfig, leap_loss
from leap.pooling import mean_pool

OBJECTIVES = ("leap", "adaptive_layer", "layerskip")
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs (config key ``training`` plus a variant's overrides).

    Attributes:
        student: initialisation: hub id, local folder, or ``packaged:all-MiniLM-L6-v2``.
        random_init: keep the student's architecture and tokenizer, re-initialise its weights.
        n_layers: student depth; fewer than the init keeps its first layers (``None``: all).
        epochs, batch_size, lr, warmup_ratio, weight_decay, seed: optimisation (AdamW, linear decay).
        max_steps: stop after this many optimiser steps (``None``: ``epochs`` decide).
        precision: ``fp32`` / ``fp16`` / ``bf16`` (mixed precision on GPU only).
        max_seq_length: student truncation length during training (a budget choice: the
            saved model keeps the longer of this and its initialisation's own length).
        max_samples: train on the first ``max_samples`` cached sentences (``None``: all).
        checkpoint_steps: save a resumable checkpoint every so many steps (``None``: none).
        log_steps: write a ``train_log.jsonl`` line every so many steps.
        projection_init: ``lstsq`` (least squares from the initial student to the teacher's
            final layer on up to 2,048 training sentences) or ``random``.
        projection_lr: learning rate of ``P`` (``None``: ``lr``).
        objective: ``leap`` / ``adaptive_layer`` / ``layerskip``.
        layerskip_p_max: ``p_max`` of the layerskip objective's layer dropout.
        loss: the LEAP loss config.
    """

    student: str = "packaged:all-MiniLM-L6-v2"
    random_init: bool = False
    n_layers: int | None = None
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    max_steps: int | None = None
    precision: str = "fp32"
    max_seq_length: int = 128
    max_samples: int | None = None
    checkpoint_steps: int | None = None
    log_steps: int = 10
    projection_init: str = "lstsq"
    projection_lr: float | None = None
    objective: str = "leap"
    layerskip_p_max: float = 0.1
    loss: LeapLossConfig = field(default_factory=LeapLossConfig)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise LeapError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
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
        if self.n_layers is not None and self.n_layers < 1:
            raise LeapError(f"n_layers must be >= 1, got {self.n_layers}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- variants: every model the paper trains, as configs ------------------------------------
VARIANTS: dict[str, dict[str, Any]] = {
    "leap": {"loss": {"terms": list(ALL_TERMS)}},
    "baseline": {"loss": {"terms": list(BASELINE_TERMS)}},
    **{name: {"loss": {"terms": list(terms)}} for name, terms in ABLATION_TERMS.items()},
    **{f"beta{b}": {"loss": {"terms": list(ALL_TERMS), "beta": b}, "sweep": True} for b in (0.1, 0.2, 0.4, 0.6, 0.8)},
    # fixed depth: round(E[exit layer]) layers (7 of 12 in the paper), baseline loss, uniform map
    "fixed_depth": {"loss": {"terms": list(BASELINE_TERMS), "layer_map": None, "late_layers": None}, "n_layers": 7},
    # Not in the paper: LEAP with the causes found at CPU scale fixed (issue 8,
    # results/cpu/exploration.md): a softplus margin that does not saturate far below tau,
    # a larger exit weight, no beta_s ramp (every term on from the first step).
    "leap_fix": {"loss": {"terms": list(ALL_TERMS), "exit_margin": "softplus", "exit_s_target": "final",
                          "beta": 5.0, "progressive": None}},
    "adaptive_layer": {"objective": "adaptive_layer", "loss": {"terms": ["final"]}},
    "layerskip": {"objective": "layerskip", "loss": {"terms": list(BASELINE_TERMS)}},
}
"""Overrides per named variant, applied on top of the config's ``training`` section.
``sweep: True`` variants also take the config's ``sweep`` overrides (less data, fewer epochs)."""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _tuples(loss: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in loss.items()}


def make_train_config(
    training: dict,
    variant: str,
    seed: int,
    variant_overrides: dict | None = None,
    sweep: dict | None = None,
    custom: dict[str, dict] | None = None,
) -> TrainConfig:
    """The resolved :class:`TrainConfig` of ``variant`` and ``seed``.

    Order: ``training`` <- registry entry (or ``custom[variant]``, whose ``base`` names a
    registry entry) <- ``sweep`` (sweep variants) <- ``variant_overrides``. Unknown variants
    and unknown keys raise :class:`LeapError` naming them.
    """
    custom = custom or {}
    if variant in custom:
        spec = dict(custom[variant])
        base = spec.pop("base", "leap")
        if base not in VARIANTS:
            raise LeapError(f"custom variant {variant!r}: unknown base {base!r}; known: {', '.join(VARIANTS)}")
        entry = _merge(VARIANTS[base], spec)
    elif variant in VARIANTS:
        entry = VARIANTS[variant]
    else:
        raise LeapError(f"unknown variant {variant!r}; known: {', '.join([*VARIANTS, *custom])} "
                        f"(add one under custom_variants in the config)")
    entry = dict(entry)
    is_sweep = entry.pop("sweep", False)
    cfg = _merge(training, entry)
    if is_sweep and sweep:
        cfg = _merge(cfg, sweep)
    if variant_overrides:
        cfg = _merge(cfg, variant_overrides)
    cfg["seed"] = int(seed)
    loss = cfg.pop("loss", {}) or {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise LeapError(f"variant {variant!r}: unknown training keys {unknown}; known: {', '.join(sorted(known))}")
    lknown = {f.name for f in dataclasses.fields(LeapLossConfig)}
    lunknown = sorted(set(loss) - lknown)
    if lunknown:
        raise LeapError(f"variant {variant!r}: unknown loss keys {lunknown}; known: {', '.join(sorted(lknown))}")
    return TrainConfig(**cfg, loss=LeapLossConfig(**_tuples(loss)))


def train_config_from_dict(d: dict) -> TrainConfig:
    d = dict(d)
    loss = d.pop("loss", {}) or {}
    return TrainConfig(**d, loss=LeapLossConfig(**_tuples(loss)))


# -- model helpers --------------------------------------------------------------------------
def hf_model(st: Any) -> nn.Module:
    """The transformers model inside a SentenceTransformer."""
    first = st[0]
    return getattr(first, "auto_model", None) or first.model


def truncate_layers(model: nn.Module, n_layers: int) -> None:
    """Keep the first ``n_layers`` transformer layers (a student shallower than its init)."""
    from leap.early_exit import ARCHITECTURES

    mt = model.config.model_type
    if mt not in ARCHITECTURES:
        raise LeapError(f"architecture {mt!r} not supported; supported: {', '.join(ARCHITECTURES)}")
    layers = ARCHITECTURES[mt].layers(model)
    if n_layers > len(layers):
        raise LeapError(f"n_layers {n_layers} exceeds the {len(layers)} layers of the initialisation")
    parent = model.transformer if mt == "distilbert" else model.encoder
    parent.layer = nn.ModuleList(list(layers)[:n_layers])
    if mt == "distilbert":
        model.config.n_layers = n_layers
    else:
        model.config.num_hidden_layers = n_layers


def load_student(cfg: TrainConfig, device: str = "cpu") -> Any:
    """The student SentenceTransformer: init, optional re-initialisation and truncation."""
    from leap.early_exit import _load_sentence_transformer, _unwrap
    from leap.models import resolve_model_ref

    ref = resolve_model_ref(cfg.student)
    st = _load_sentence_transformer(ref, device)
    _unwrap(st, cfg.student)  # Transformer -> mean Pooling (-> Normalize) only
    model = hf_model(st)
    if cfg.random_init:
        torch.manual_seed(cfg.seed)
        model.apply(model._init_weights)
    if cfg.n_layers is not None:
        truncate_layers(model, cfg.n_layers)
    st.leap_served_max_seq_length = max(int(st.max_seq_length or 0), cfg.max_seq_length)
    st.max_seq_length = cfg.max_seq_length
    return st


def num_layers(st: Any) -> int:
    from leap.early_exit import ARCHITECTURES

    m = hf_model(st)
    return len(ARCHITECTURES[m.config.model_type].layers(m))


def pooled_layers(st: Any, features: dict[str, Tensor]) -> Tensor:
    """``[L_s, B, d_s]`` mean-pooled vectors of student layers 1..L_s (one forward pass)."""
    out = st(dict(features))
    hidden = out["all_layer_embeddings"][1:]  # drop the embedding layer
    mask = features["attention_mask"]
    return torch.stack([mean_pool(h, mask) for h in hidden])


# -- layer dropout (layerskip objective) ------------------------------------------------------
class LayerDropout:
    """Per-sample layer dropout with rate ``p_l = p_max l / L`` (LayerSkip): a dropped sample
    passes layer ``l`` unchanged. Active only while the model is in training mode."""

    def __init__(self, model: nn.Module, p_max: float) -> None:
        from leap.early_exit import ARCHITECTURES

        layers = ARCHITECTURES[model.config.model_type].layers(model)
        n = len(layers)
        self.handles = [
            layer.register_forward_hook(self._hook(p_max * (i + 1) / n), with_kwargs=True)
            for i, layer in enumerate(layers)
        ]

    @staticmethod
    def _hook(p: float):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if not module.training or p <= 0:
                return None
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            drop = torch.rand(h_in.shape[0], device=h_in.device) < p  # [B]
            mixed = torch.where(drop[:, None, None], h_in, h_out)
            return (mixed, *output[1:]) if isinstance(output, tuple) else mixed

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def layerskip_exit_loss(ps: Tensor, t_final: Tensor) -> Tensor:
    """``sum_l s_l (1 - cos(P e_s^(l), e_t^(L_t)))``, ``s_l = l / sum_j j`` (``ps``: ``[L, B, d_t]``)."""
    n = ps.shape[0]
    s = torch.arange(1, n + 1, dtype=ps.dtype, device=ps.device)
    s = s / s.sum()
    cos = F.cosine_similarity(ps, t_final.unsqueeze(0).expand_as(ps), dim=-1)  # [L, B]
    return (s[:, None] * (1 - cos)).sum(0).mean()


# -- the loss modules --------------------------------------------------------------------------
class LeapTrainingLoss(nn.Module):
    """sentence-transformers loss module around :func:`leap.losses.leap_loss`.

    ``labels`` are row indices into the teacher cache. ``progress`` (fraction of steps done)
    is set by :class:`ProgressCallback`. ``last_terms`` holds the latest unweighted terms
    for the training log. A non-finite loss raises :class:`LeapError` naming step and term.
    """

    def __init__(self, model: Any, cache: Any, config: LeapLossConfig, projection: nn.Linear,
                 objective: str = "leap", layerskip_p_max: float = 0.1) -> None:
        super().__init__()
        self.model = model
        self.cache = cache
        self.config = config
        self.projection = projection
        self.objective = objective
        self.progress = 0.0
        self.step = 0
        self.last_terms: dict[str, float] = {}
        self.layerskip = objective == "layerskip"
        self._dropout = LayerDropout(hf_model(model), layerskip_p_max) if self.layerskip else None
        n_s = num_layers(model)
        self.teacher_layers = sorted(set(config.mapping(n_s, cache.num_teacher_layers)) | {cache.num_teacher_layers}) \
            if "inter" in config.terms else [cache.num_teacher_layers]

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)[0]
        student = pooled_layers(self.model, features)  # [L_s, B, d_s]
        dev = student.device
        teacher = {l: t.to(dev) for l, t in self.cache.get(labels, self.teacher_layers).items()}
        out = leap_loss(student.float(), teacher, self.config, self.progress, self.projection)
        total = out["total"]
        if self.layerskip:
            out["layerskip"] = layerskip_exit_loss(self.projection(student.float()), teacher[max(teacher)])
            total = total + out["layerskip"]
            out["total"] = total
        check_finite(out, self.step)
        self.last_terms = {k: float(v.detach()) for k, v in out.items()}
        self.last_terms["beta_s"] = self.config.beta_s_at(self.progress)
        return total


class ProjectedCosineLoss(nn.Module):
    """Distillation to the teacher's final embedding: ``1 - cos(P e_s, e_t^(L_t))``.

    The inner loss of the ``adaptive_layer`` objective (``AdaptiveLayerLoss`` calls it with
    the model truncated to fewer layers); ``P`` matches the student's width to the teacher's.
    """

    def __init__(self, model: Any, cache: Any, projection: nn.Linear) -> None:
        super().__init__()
        self.model = model
        self.cache = cache
        self.projection = projection
        self.step = 0
        self.last_terms: dict[str, float] = {}

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)[0]
        emb = self.model(features)["sentence_embedding"]  # same dict: AdaptiveLayerLoss caches layers in it
        t = self.cache.get(labels, [self.cache.num_teacher_layers])[self.cache.num_teacher_layers].to(emb.device)
        loss = (1 - F.cosine_similarity(self.projection(emb.float()), t, dim=-1)).mean()
        check_finite({"final": loss}, self.step)
        return loss


class AdaptiveLayerTrainingLoss(nn.Module):
    """``AdaptiveLayerLoss`` (sentence-transformers, default arguments) around
    :class:`ProjectedCosineLoss`; exposes ``last_terms`` for the training log."""

    def __init__(self, model: Any, cache: Any, projection: nn.Linear) -> None:
        super().__init__()
        from sentence_transformers.sentence_transformer.losses import AdaptiveLayerLoss

        self.inner = ProjectedCosineLoss(model, cache, projection)
        self.adaptive = AdaptiveLayerLoss(model, self.inner)
        self.projection = projection
        self.model = model
        self.progress = 0.0
        self.step = 0
        self.last_terms: dict[str, float] = {}

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        self.inner.step = self.step
        loss = self.adaptive(sentence_features, labels)
        check_finite({"total": loss}, self.step)
        self.last_terms = {"total": float(loss.detach())}
        return loss


def check_finite(terms: dict[str, Tensor], step: int) -> None:
    """Stop on NaN/inf: name the step and the first non-finite term."""
    for k, v in terms.items():
        if not torch.isfinite(v).all():
            raise LeapError(f"non-finite loss at step {step}: term {k!r} is {float(v.detach())}; lower the learning "
                            f"rate or check the teacher cache for NaN rows")


# -- projection --------------------------------------------------------------------------------
def init_projection(st: Any, cache: Any, sentences: Sequence[str], indices: np.ndarray, method: str, seed: int,
                    batch_size: int = 64) -> nn.Linear:
    """``P: d_s -> d_t`` (no bias). ``lstsq``: least squares from the initial student's final
    pooled vectors of ``sentences[indices]`` to the teacher's final vectors of the same rows;
    ``random``: PyTorch's default initialisation."""
    d_s = st.get_embedding_dimension()
    d_t = cache.dim
    gen = torch.Generator().manual_seed(seed)
    proj = nn.Linear(d_s, d_t, bias=False)
    with torch.no_grad():
        bound = 1 / math.sqrt(d_s)
        proj.weight.copy_(torch.empty(d_t, d_s).uniform_(-bound, bound, generator=gen))
    if method == "random":
        return proj
    xs, ys = [], []
    st.eval()
    with torch.no_grad():
        for i in range(0, len(indices), batch_size):
            idx = indices[i : i + batch_size]
            feats = st.preprocess([sentences[j] for j in idx])
            feats = {k: v.to(st.device) if isinstance(v, Tensor) else v for k, v in feats.items()}
            xs.append(pooled_layers(st, feats)[-1].float().cpu())
            ys.append(cache.get(idx, [cache.num_teacher_layers])[cache.num_teacher_layers])
    x, y = torch.cat(xs).double(), torch.cat(ys).double()
    # normalised rows: cosine is what the losses read
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    ridge = 1e-3 * torch.eye(d_s, dtype=torch.float64)
    w = torch.linalg.solve(x.T @ x + ridge, x.T @ y)  # [d_s, d_t]
    with torch.no_grad():
        proj.weight.copy_(w.T.float())
    return proj


# -- callbacks ---------------------------------------------------------------------------------
def _callbacks(loss: nn.Module, log_path: Path, log_steps: int, projection: nn.Linear, fingerprint: dict):
    from safetensors.torch import load_file, save_file
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Feeds ``progress = step / max_steps`` to the beta_s schedule; writes train_log.jsonl;
        saves ``P``, the run's fingerprint and the log so far with each checkpoint."""

        def __init__(self) -> None:
            self.acc: dict[str, float] = {}
            self.n = 0

        def on_step_begin(self, args, state, control, **kw):
            loss.progress = state.global_step / max(1, state.max_steps)
            loss.step = state.global_step

        def on_step_end(self, args, state, control, **kw):
            for k, v in loss.last_terms.items():
                self.acc[k] = self.acc.get(k, 0.0) + v
            self.n += 1
            if state.global_step % log_steps == 0 or state.global_step == state.max_steps:
                if state.is_world_process_zero and self.n:
                    lr = kw["lr_scheduler"].get_last_lr()[0] if kw.get("lr_scheduler") is not None else None
                    row = {"step": state.global_step, "epoch": state.epoch, "lr": lr,
                           "progress": state.global_step / max(1, state.max_steps),
                           **{k: v / self.n for k, v in self.acc.items()}}
                    with open(log_path, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
                self.acc, self.n = {}, 0

        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                ckpt.mkdir(parents=True, exist_ok=True)
                save_file({"weight": projection.weight.detach().cpu().contiguous()}, str(ckpt / "projection.safetensors"))
                if log_path.exists():
                    shutil.copyfile(log_path, ckpt / "train_log.jsonl")
                write_json(ckpt / _FINGERPRINT, fingerprint)  # last: its presence marks the checkpoint usable

    def restore(ckpt: Path) -> None:
        w = load_file(str(ckpt / "projection.safetensors"))["weight"]
        with torch.no_grad():
            projection.weight.copy_(w)
        # the log as it was at the checkpoint (Snakemake removes the output log before a rerun)
        saved = ckpt / "train_log.jsonl"
        if saved.exists():
            shutil.copyfile(saved, log_path)
        _truncate_log(log_path, int(ckpt.name.split("-")[-1]))

    return ProgressCallback(), restore


_FINGERPRINT = "leap_run.json"
# fields that do not change the trained weights: a checkpoint stays valid when only they change
_NOT_FINGERPRINTED = ("checkpoint_steps", "log_steps")


def run_fingerprint(cfg: TrainConfig, teacher: str | None, sentences_sha256: str, n_train: int) -> dict:
    """What identifies a training run for resuming: the resolved config (less logging and
    checkpoint intervals), the teacher, the training sentences' checksum and their number."""
    conf = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_FINGERPRINTED}
    return json.loads(json.dumps({"config": conf, "teacher": teacher, "sentences_sha256": sentences_sha256,
                                  "n_train": n_train}))


def _fingerprint_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for k in keys:
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _fingerprint_diff(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


def _last_checkpoint(ckpt_dir: Path, fingerprint: dict, log: Callable[[str], None] = print) -> Path | None:
    """The last complete checkpoint of *this* run, or ``None``.

    A checkpoint is complete once its fingerprint file exists (written last); an incomplete
    one (killed while saving) is skipped. Checkpoints written by a run with another
    fingerprint (an earlier config, other sentences) are removed, never resumed.
    """
    if not ckpt_dir.is_dir():
        return None
    zero = int(os.environ.get("RANK", "0")) == 0  # one process removes files under torchrun
    ckpts = sorted((p for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for ckpt in ckpts:
        fp = ckpt / _FINGERPRINT
        if not (fp.exists() and (ckpt / "projection.safetensors").exists()):
            log(f"skipping incomplete checkpoint {ckpt} (killed while saving)")
            if zero:
                shutil.rmtree(ckpt, ignore_errors=True)
            continue
        saved = json.loads(fp.read_text())
        if saved == fingerprint:
            return ckpt
        why = ", ".join(_fingerprint_diff(saved, fingerprint)[:8])
        log(f"discarding checkpoints in {ckpt_dir}: {ckpt.name} was written by another run "
            f"(differs in {why}); training starts from the beginning")
        break
    if zero:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return None


def _truncate_log(log_path: Path, step: int) -> None:
    if not log_path.exists():
        return
    rows = [l for l in log_path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= step]
    log_path.write_text("".join(r + "\n" for r in rows))


def _sync_grad_hook(param: nn.Parameter) -> None:
    """Average ``P``'s gradient across processes (it lives in the loss, outside DDP)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        def hook(grad: Tensor) -> Tensor:
            g = grad.clone()
            dist.all_reduce(g)
            return g / dist.get_world_size()

        param.register_hook(hook)


# -- the training run ---------------------------------------------------------------------------
def train(
    cfg: TrainConfig,
    sentences: Sequence[str],
    cache_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    teacher: str | None = None,
    log: Callable[[str], None] = print,
    progress_bar: bool = True,
    stop_after_steps: int | None = None,
    threads: int | None = None,
) -> Path:
    """Train one student; returns the ``model/`` folder.

    Checks the cache against the sentences, the teacher and the layer map before training.
    ``stop_after_steps`` ends the run after that many steps without writing the final
    model (tests of the resume path use it).
    """
    from datasets import Dataset
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    from leap.teacher import TeacherCache, required_layers

    if threads:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    if cfg.precision != "fp32" and not cuda:
        raise LeapError(f"precision {cfg.precision} needs a GPU; use precision fp32 on CPU")
    cache = TeacherCache.open(cache_dir, sentences=sentences, teacher=teacher, verify=True)
    st = load_student(cfg, device="cuda" if cuda else "cpu")
    n_s = num_layers(st)
    if cfg.loss.layer_map is not None and len(cfg.loss.layer_map) != n_s:
        raise LeapError(f"layer_map has {len(cfg.loss.layer_map)} entries for a {n_s}-layer student")
    needed = required_layers([(n_s, cfg.loss.layer_map)], cache.num_teacher_layers) \
        if "inter" in cfg.loss.terms else [cache.num_teacher_layers]
    cfg.loss.weights(n_s), cfg.loss.late(n_s)  # validate against the depth
    cache.require(needed)
    n = len(sentences) if cfg.max_samples is None else min(cfg.max_samples, len(sentences))
    ds = Dataset.from_dict({"sentence": list(sentences[:n]), "label": list(range(n))})

    torch.manual_seed(cfg.seed)
    hf_model(st).config.output_hidden_states = True  # all_layer_embeddings in the ST forward
    init_idx = np.arange(min(n, 2048))
    projection = init_projection(st, cache, sentences, init_idx, cfg.projection_init, cfg.seed).to(st.device)
    if cfg.objective == "adaptive_layer":
        loss: nn.Module = AdaptiveLayerTrainingLoss(st, cache, projection)
    else:
        loss = LeapTrainingLoss(st, cache, cfg.loss, projection, cfg.objective, cfg.layerskip_p_max)
    _sync_grad_hook(projection.weight)

    ckpt_dir = out / "checkpoints"
    log_path = out / "train_log.jsonl"
    fingerprint = run_fingerprint(cfg, teacher, cache.manifest["sentences_sha256"], n)
    resume = _last_checkpoint(ckpt_dir, fingerprint, log)
    progress_cb, restore = _callbacks(loss, log_path, cfg.log_steps, projection, fingerprint)
    if resume is not None:
        log(f"resuming from {resume}")
        restore(resume)
    elif log_path.exists():
        log_path.unlink()

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                control.should_training_stop = True

    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        seed=cfg.seed,
        data_seed=cfg.seed,
        fp16=cfg.precision == "fp16",
        bf16=cfg.precision == "bf16",
        save_strategy="steps" if cfg.checkpoint_steps else "no",
        save_steps=cfg.checkpoint_steps or 500,
        save_total_limit=2,
        logging_steps=cfg.log_steps,
        report_to="none",
        disable_tqdm=not progress_bar,
        use_cpu=not cuda,
        dataloader_drop_last=False,
        # P sits at ``projection`` or, inside AdaptiveLayerLoss, ``inner.projection``
        learning_rate_mapping={r".*projection\.weight$": cfg.projection_lr} if cfg.projection_lr else {},
    )
    trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=ds, loss=loss,
                                         callbacks=[progress_cb, Stop()])
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    if stop_after_steps is not None and trainer.state.global_step < trainer.state.max_steps:
        log(f"stopped at step {trainer.state.global_step} of {trainer.state.max_steps} (stop_after_steps)")
        return out / "model"
    if not trainer.is_world_process_zero():
        return out / "model"

    hf_model(st).config.output_hidden_states = False
    st.max_seq_length = st.leap_served_max_seq_length  # serve at the init's length, not the training budget
    if isinstance(loss, LeapTrainingLoss) and loss._dropout is not None:
        loss._dropout.remove()
    target = out / "model"
    tmp = out / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    st.save(str(tmp), safe_serialization=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    with atomic_path(out / "projection.safetensors", suffix=".safetensors") as p:
        save_file({"weight": projection.weight.detach().cpu().contiguous()}, str(p))
    write_json(out / "train_config.json", {**cfg.to_dict(), "teacher": teacher,
                                            "n_train": n, "steps": trainer.state.global_step,
                                            "student_layers": n_s, "teacher_layers_read": needed})
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # the run is complete: nothing left to resume
    log(f"trained {cfg.objective} ({', '.join(cfg.loss.terms)}) for {trainer.state.global_step} steps -> {target}")
    return target
