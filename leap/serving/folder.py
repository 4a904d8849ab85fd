"""A model folder read once: everything ``leap`` keeps beside a SentenceTransformer's weights.

:meth:`ModelFolder.read` resolves a model reference (a local folder, a Hugging Face Hub id, or
``packaged:all-MiniLM-L6-v2``) and reads, for a local folder, the files this package writes:

* ``leap_exit.json``: the exit rule (:class:`~leap.core.exit_config.ExitConfig`) and the
  records of calibration (``calibration``) and of the serving path chosen by
  ``leap calibrate --paths auto`` (``serving``);
* ``layer_maps.safetensors``: per-layer maps into the last layer's space;
* ``onnx/manifest.json``: what ``leap export`` wrote (segments, cuts, int8, weights hash);
* ``config_sentence_transformers.json`` and ``modules.json``: prompts, similarity function,
  whether the embedding is normalised.

Every engine and every deployment step receives this one object; none of them reads the
folder's files again.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from leap.core.exit_config import (
    CALIBRATION_KEY,
    SERVING_KEY,
    ExitConfig,
    read_exit_file,
    read_serving,
)
from leap.core.hashing import weights_sha
from leap.core.layer_maps import LayerMaps
from leap.errors import LeapError
from leap.serving.sources import resolve_model_ref

ONNX_DIR = "onnx"
"""Where ``leap export`` writes its graphs inside a model folder."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_source(path_or_id: str | os.PathLike) -> str:
    """A model reference -> what ``SentenceTransformer`` loads: ``packaged:all-MiniLM-L6-v2``
    is resolved, a local folder is checked, anything else must look like a hub id."""
    ref = resolve_model_ref(str(path_or_id))
    p = Path(os.path.expanduser(ref))
    if p.exists():
        if not p.is_dir():
            raise LeapError(f"model path {str(path_or_id)!r} is a file; pass the model's folder")
        if not (p / "config.json").exists() and not (p / "modules.json").exists():
            raise LeapError(
                f"{str(path_or_id)!r} is not a model folder (no modules.json or config.json); pass a "
                "SentenceTransformer or transformers folder, or a Hugging Face Hub id"
            )
        return str(p)
    if not _HUB_ID.match(ref) or ref.startswith((".", "/", "~")):
        raise LeapError(f"model folder {str(path_or_id)!r} does not exist; pass an existing folder or a hub id")
    return ref


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LeapError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); fix or delete it") from None


@dataclass(frozen=True)
class ModelFolder:
    """A model reference and what ``leap`` keeps in its folder, read once (:meth:`read`).

    Attributes:
        name: the reference as the user gave it.
        source: what ``SentenceTransformer`` loads (a local folder or a hub id).
        path: the local folder, or ``None`` for a hub id (nothing else is read then).
        exit: the saved exit rule, or ``None``.
        calibration: the calibration record (the monitor's reference), or ``None``.
        serving: the serving path ``leap calibrate --paths auto`` chose, or ``None``.
        layer_maps: per-layer maps, or ``None``.
        onnx_manifest: the ``leap export`` manifest, or ``None`` when never exported.
        st_config: ``config_sentence_transformers.json`` (prompts, similarity), or ``{}``.
        normalize: whether the model ends in a ``Normalize`` module.
        max_seq_length: from ``sentence_bert_config.json`` (512 when absent).
    """

    name: str
    source: str
    path: Path | None = None
    exit: ExitConfig | None = None
    calibration: dict | None = None
    serving: dict | None = None
    layer_maps: LayerMaps | None = None
    onnx_manifest: dict | None = None
    st_config: dict = field(default_factory=dict)
    normalize: bool = False
    max_seq_length: int = 512

    @classmethod
    def read(cls, ref: str | os.PathLike | ModelFolder) -> ModelFolder:
        """Resolve ``ref`` and read its folder's files (one clear error for any bad one)."""
        if isinstance(ref, ModelFolder):
            return ref
        source = resolve_source(ref)
        path = Path(source) if Path(source).is_dir() else None
        if path is None:
            return cls(name=str(ref), source=source)
        records = read_exit_file(path) or {}
        manifest = path / ONNX_DIR / "manifest.json"
        modules = path / "modules.json"
        st_cfg = path / "config_sentence_transformers.json"
        sbert = path / "sentence_bert_config.json"
        return cls(
            name=str(ref),
            source=source,
            path=path,
            exit=ExitConfig.load(path),
            calibration=records.get(CALIBRATION_KEY),
            serving=read_serving(path),
            layer_maps=LayerMaps.load(path),
            onnx_manifest=_json(manifest) if manifest.is_file() else None,
            st_config=_json(st_cfg) if st_cfg.is_file() else {},
            normalize=modules.is_file() and any(m["type"].endswith("Normalize") for m in _json(modules)),
            max_seq_length=int(_json(sbert).get("max_seq_length") or 512) if sbert.is_file() else 512,
        )

    @property
    def records(self) -> dict[str, Any]:
        """The records saved beside the rule in ``leap_exit.json``."""
        out = {CALIBRATION_KEY: self.calibration, SERVING_KEY: self.serving}
        return {k: v for k, v in out.items() if v is not None}

    @cached_property
    def weights_sha256(self) -> str:
        """SHA-256 of the folder's weights (computed once): what an ONNX export must match."""
        return weights_sha(self.require_local("hashing the weights"))

    def require_local(self, what: str) -> Path:
        """The local folder, or one error saying that ``what`` needs one."""
        if self.path is None:
            raise LeapError(f"{what} needs a local model folder; {self.name!r} is a hub id (download it first)")
        return self.path
