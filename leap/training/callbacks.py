"""The trainer callback: training progress into the loss, ``train_log.jsonl``, and the
heads (``P``, trained maps), fingerprint and log saved with every checkpoint."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from leap.files import write_json
from leap.training.resume import FINGERPRINT, HEADS, truncate_log


def progress_callback(
    loss: Any, log_path: Path, log_steps: int, heads: nn.Module, fingerprint: dict, stop_after_steps: int | None = None
) -> tuple[Any, Callable[[Path], None]]:
    """``(callback, restore)``: the ``TrainerCallback`` and the function that restores the
    heads and the log from a checkpoint folder."""
    from safetensors.torch import load_file, save_file
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Feeds ``progress = step / max_steps`` to the loss (the beta_s schedule); writes
        train_log.jsonl; saves the heads, the run's fingerprint and the log so far with each
        checkpoint; stops after ``stop_after_steps`` (tests of the resume path)."""

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
                    row = {
                        "step": state.global_step,
                        "epoch": state.epoch,
                        "lr": lr,
                        "progress": state.global_step / max(1, state.max_steps),
                        **{k: v / self.n for k, v in self.acc.items()},
                    }
                    with open(log_path, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
                self.acc, self.n = {}, 0
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                control.should_training_stop = True

        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                ckpt.mkdir(parents=True, exist_ok=True)
                save_file({k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}, str(ckpt / HEADS))
                if log_path.exists():
                    shutil.copyfile(log_path, ckpt / "train_log.jsonl")
                write_json(ckpt / FINGERPRINT, fingerprint)  # last: its presence marks the checkpoint usable

    def restore(ckpt: Path) -> None:
        heads.load_state_dict(load_file(str(ckpt / HEADS)))
        # the log as it was at the checkpoint (Snakemake removes the output log before a rerun)
        saved = ckpt / "train_log.jsonl"
        if saved.exists():
            shutil.copyfile(saved, log_path)
        truncate_log(log_path, int(ckpt.name.split("-")[-1]))

    return ProgressCallback(), restore
