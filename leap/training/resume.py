"""Resuming a killed training run: the run's fingerprint and its last complete checkpoint.

A checkpoint records the run's fingerprint (resolved config, teacher, sentences' checksum)
and the log so far. A rerun resumes from the last checkpoint only when the fingerprint
matches; checkpoints of another run are discarded, with a message.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from leap.training.config import TrainConfig

log = logging.getLogger(__name__)

FINGERPRINT = "leap_run.json"
HEADS = "heads.safetensors"  # P and any trained layer maps: they live in the loss, outside the model
# fields that do not change the trained weights: a checkpoint stays valid when only they change
NOT_FINGERPRINTED = ("checkpoint_steps", "log_steps")


def run_fingerprint(cfg: TrainConfig, teacher: str | None, sentences_sha256: str, n_train: int) -> dict:
    """What identifies a training run for resuming: the resolved config (less logging and
    checkpoint intervals), the teacher, the training sentences' checksum and their number."""
    conf = {k: v for k, v in cfg.to_dict().items() if k not in NOT_FINGERPRINTED}
    return json.loads(
        json.dumps({"config": conf, "teacher": teacher, "sentences_sha256": sentences_sha256, "n_train": n_train})
    )


def fingerprint_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys where two fingerprints differ."""
    out: list[str] = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += fingerprint_diff(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


def last_checkpoint(ckpt_dir: Path, fingerprint: dict) -> Path | None:
    """The last complete checkpoint of *this* run, or ``None``.

    A checkpoint is complete once its fingerprint file exists (written last); an incomplete
    one (killed while saving) is skipped. Checkpoints written by a run with another
    fingerprint (an earlier config, other sentences) are removed, never resumed.
    """
    if not ckpt_dir.is_dir():
        return None
    zero = int(os.environ.get("RANK", "0")) == 0  # one process removes files under torchrun
    ckpts = sorted(
        (p for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for ckpt in ckpts:
        fp = ckpt / FINGERPRINT
        if not (fp.exists() and (ckpt / HEADS).exists()):
            log.info("skipping incomplete checkpoint %s (killed while saving)", ckpt)
            if zero:
                shutil.rmtree(ckpt, ignore_errors=True)
            continue
        saved = json.loads(fp.read_text())
        if saved == fingerprint:
            return ckpt
        why = ", ".join(fingerprint_diff(saved, fingerprint)[:8])
        log.warning(
            "discarding checkpoints in %s: %s was written by another run (differs in %s); "
            "training starts from the beginning",
            ckpt_dir,
            ckpt.name,
            why,
        )
        break
    if zero:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return None


def truncate_log(log_path: Path, step: int) -> None:
    """Keep the ``train_log.jsonl`` lines of steps up to ``step``."""
    if not log_path.exists():
        return
    rows = [l for l in log_path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= step]
    log_path.write_text("".join(r + "\n" for r in rows))
