"""One training run on sentence-transformers' ``SentenceTransformerTrainer`` (paper sec 4.1,
B.2, G).

The dataset has two columns, ``sentence`` and ``label`` (the sentence's row in the teacher
cache); the objective (:mod:`leap.training.objectives`) looks the teacher targets up in the cache,
so the teacher never runs during training.

Output in ``out_dir``: ``model/`` (an exit-enabled SentenceTransformer folder: safetensors
weights, ``leap_exit.json``, per-layer maps when the variant has them, a model card),
``projection.safetensors`` (``P``, not part of the inference model), ``train_config.json``
(the resolved config) and ``train_log.jsonl`` (every loss term, ``beta_s``, ``lr`` and
``step``). Checkpoints go to ``out_dir/checkpoints`` (:mod:`leap.training.resume`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leap.core.exit_config import ExitConfig
from leap.errors import LeapError
from leap.files import atomic_dir, atomic_path, disk_full_error, is_disk_full, write_json
from leap.training.callbacks import progress_callback
from leap.training.config import TrainConfig, cpu_has_bf16
from leap.training.heads import TrainableLayerMaps, fit_student_maps, init_projection
from leap.training.objectives import get_objective
from leap.training.resume import last_checkpoint, run_fingerprint
from leap.training.student import hf_model, load_student

log = logging.getLogger(__name__)


def _sync_grad_hook(param: nn.Parameter) -> None:
    """Average a head's gradient across processes (the heads live in the loss, outside DDP)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:

        def hook(grad: torch.Tensor) -> torch.Tensor:
            g = grad.clone()
            dist.all_reduce(g)
            return g / dist.get_world_size()

        param.register_hook(hook)


def train(
    cfg: TrainConfig,
    sentences: Sequence[str],
    cache_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    teacher: str | None = None,
    exit: ExitConfig | None = None,
    progress_bar: bool = True,
    stop_after_steps: int | None = None,
    threads: int | None = None,
) -> Path:
    """Train one student; returns the ``model/`` folder.

    Checks the cache against the sentences, the teacher and the layer map before training.
    ``exit`` is the rule saved with the model (default :class:`ExitConfig`, ``l_min`` from
    the depth). ``stop_after_steps`` ends the run after that many steps without writing the
    final model (tests of the resume path use it).
    """
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer

    from leap.core.early_exit import num_layers
    from leap.training.teacher import TeacherCache

    if threads:
        torch.set_num_threads(threads)
    if teacher is None and cfg.teacher == "self":
        teacher = cfg.student  # self-distillation: the cache was built with the student's own init
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    check_precision(cfg.precision, cuda)
    objective = get_objective(cfg.objective)
    cache = TeacherCache.open(cache_dir, sentences=sentences, teacher=teacher, verify=True)
    st = load_student(cfg, device="cuda" if cuda else "cpu")
    n_s = num_layers(hf_model(st))
    needed = teacher_layers_for(cfg, objective, cache, n_s)
    rule = (exit or ExitConfig()).resolve(n_s)
    n = len(sentences) if cfg.max_samples is None else min(cfg.max_samples, len(sentences))
    ds = Dataset.from_dict({"sentence": list(sentences[:n]), "label": list(range(n))})

    torch.manual_seed(cfg.seed)
    hf_model(st).config.output_hidden_states = True  # all_layer_embeddings in the ST forward
    heads = training_heads(st, cache, sentences, cfg, n, n_s)
    loss = objective(st, cache, cfg, heads)
    for param in heads.parameters():
        _sync_grad_hook(param)

    ckpt_dir = out / "checkpoints"
    fingerprint = run_fingerprint(cfg, teacher, cache.manifest["sentences_sha256"], n)
    resume = last_checkpoint(ckpt_dir, fingerprint)
    callback = resume_or_start(out / "train_log.jsonl", resume, loss, heads, cfg, fingerprint, stop_after_steps)

    args = training_arguments(cfg, ckpt_dir, progress_bar, cuda)
    trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=ds, loss=loss, callbacks=[callback])
    run_trainer(trainer, resume, ckpt_dir, st)
    if stop_after_steps is not None and trainer.state.global_step < trainer.state.max_steps:
        log.info("stopped at step %d of %d (stop_after_steps)", trainer.state.global_step, trainer.state.max_steps)
        return out / "model"
    if not trainer.is_world_process_zero():
        return out / "model"

    loss.finish()
    info = {
        **cfg.to_dict(),
        "teacher": teacher,
        "n_train": n,
        "steps": trainer.state.global_step,
        "student_layers": n_s,
        "teacher_layers_read": needed,
        "exit": rule.to_dict(),
    }
    target = save_run(out, st, heads, cfg, rule, info, sentences[: min(n, cfg.layer_maps_fit)])
    terms = ", ".join(cfg.loss.terms)
    log.info("trained %s (%s) for %d steps -> %s", cfg.objective, terms, trainer.state.global_step, target)
    return target


def check_precision(precision: str, cuda: bool) -> None:
    """Refuse a mixed precision this device cannot run fast: fp16 needs a GPU; bf16 needs a GPU
    or a CPU with native bfloat16 (:func:`cpu_has_bf16`). On such a CPU (AMX), bf16 autocast made a
    training step of a 6-layer 384-d student at batch 32 1.5x faster than fp32 (one thread;
    benchmarks/train.py)."""
    if cuda or precision == "fp32":
        return
    if precision == "fp16":
        raise LeapError("precision fp16 needs a GPU; on CPU use precision fp32 (or bf16 on a CPU with AVX512-BF16/AMX)")
    if not cpu_has_bf16():
        raise LeapError(
            "precision bf16 on this CPU would be emulated (no AVX512-BF16 or AMX): slower than fp32; use precision fp32"
        )


def training_arguments(cfg: TrainConfig, ckpt_dir: Path, progress_bar: bool, cuda: bool) -> Any:
    """The trainer's arguments for one run (checkpoints under ``ckpt_dir``)."""
    from sentence_transformers import SentenceTransformerTrainingArguments

    return SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float below 1 is a fraction of the steps
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
        # the heads (P, trained maps) sit in the loss module under heads.*
        learning_rate_mapping={r"(^|\.)heads\.": cfg.projection_lr} if cfg.projection_lr else {},
    )


def save_run(
    out: Path, st: Any, heads: nn.ModuleDict, cfg: TrainConfig, rule: ExitConfig, info: dict, fit_on: Sequence[str]
) -> Path:
    """Write the finished run: the exit-enabled model folder (weights, rule, maps, model card),
    the projection, ``train_config.json``; remove its checkpoints. Returns the model folder."""
    from safetensors.torch import save_file

    from leap.training.model_card import write_model_card

    hf_model(st).config.output_hidden_states = False
    st.max_seq_length = st.leap_served_max_seq_length  # serve at the init's length, not the training budget
    maps = None
    if "layer_maps" in heads:
        maps = heads["layer_maps"].export()
    elif cfg.layer_maps == "lstsq":
        maps = fit_student_maps(st, list(fit_on))
    info = {**info, "layer_maps_saved": maps is not None}
    target = out / "model"
    with atomic_dir(target, needed=sum(p.numel() * p.element_size() for p in st.parameters())) as tmp:
        st.save(str(tmp), safe_serialization=True)
        rule.save(tmp)
        if maps is not None:
            maps.save(tmp)
        write_model_card(tmp, info)
    with atomic_path(out / "projection.safetensors", suffix=".safetensors") as p:
        save_file({"weight": heads["projection"].weight.detach().cpu().contiguous()}, str(p))
    write_json(out / "train_config.json", info)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the run is complete: nothing left to resume
    return target


def run_trainer(trainer: Any, resume: Path | None, ckpt_dir: Path, st: Any) -> None:
    """``trainer.train``, from ``resume`` when given; a checkpoint the disk cannot take
    (safetensors, ``torch.save``) is one :class:`LeapError` naming the folder and its bytes."""
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    except Exception as err:
        if is_disk_full(err):
            raise disk_full_error(ckpt_dir, checkpoint_bytes(ckpt_dir, st), err) from None
        raise


def checkpoint_bytes(ckpt_dir: Path, st: Any) -> int:
    """What a checkpoint takes: the tensors of the largest one on disk (weights, optimizer and
    random states), else the weights with Adam's two moments."""
    tensors = (".safetensors", ".pt", ".pth", ".bin")
    sizes = [sum(f.stat().st_size for f in c.rglob("*") if f.suffix in tensors) for c in ckpt_dir.glob("checkpoint-*")]
    return max(sizes, default=3 * sum(p.numel() * p.element_size() for p in st.parameters()))


def training_heads(st: Any, cache: Any, sentences: Sequence[str], cfg: TrainConfig, n: int, n_s: int) -> nn.ModuleDict:
    """What trains beside the student: the projection ``P`` (initialised by ``cfg.projection_init``
    on the first sentences) and, with ``layer_maps: trained``, the per-layer maps."""
    projection = init_projection(st, cache, sentences, np.arange(min(n, 2048)), cfg.projection_init, cfg.seed)
    heads = nn.ModuleDict({"projection": projection.to(st.device)})
    if cfg.layer_maps == "trained":
        heads["layer_maps"] = TrainableLayerMaps(n_s, st.get_embedding_dimension()).to(st.device)
    return heads


def resume_or_start(
    log_path: Path,
    resume: Path | None,
    loss: Any,
    heads: nn.ModuleDict,
    cfg: TrainConfig,
    fingerprint: dict,
    stop_after_steps: int | None,
) -> Any:
    """The progress callback; restores the heads and the log from ``resume`` (a checkpoint of
    the same run), or starts a fresh log."""
    callback, restore = progress_callback(loss, log_path, cfg.log_steps, heads, fingerprint, stop_after_steps)
    if resume is not None:
        log.info("resuming from %s", resume)
        restore(resume)
    elif log_path.exists():
        log_path.unlink()
    return callback


def teacher_layers_for(cfg: TrainConfig, objective: Any, cache: Any, n_s: int) -> list[int]:
    """The teacher layers this run reads, after checking the loss settings against the
    student's depth and the cache against those layers (one clear error each)."""
    if cfg.loss.layer_map is not None and len(cfg.loss.layer_map) != n_s:
        raise LeapError(f"layer_map has {len(cfg.loss.layer_map)} entries for a {n_s}-layer student")
    cfg.loss.weights(n_s), cfg.loss.late(n_s)  # validate against the depth
    needed = objective.teacher_layers(cfg, n_s, cache.num_teacher_layers)
    cache.require(needed)
    return needed
