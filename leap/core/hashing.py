"""Content hashes that key cached results: a list of sentences, a model folder, its weights."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path


def sentences_checksum(sentences: Sequence[str]) -> str:
    """SHA-256 of the sentences joined by newlines (the teacher cache's key)."""
    h = hashlib.sha256()
    for s in sentences:
        h.update(s.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def folder_hash(path: str | os.PathLike) -> str:
    """SHA-256 over the names and bytes of a model folder's files (for cache manifests)."""
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts):
        h.update(str(f.relative_to(root)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def weights_sha(folder: str | os.PathLike) -> str:
    """SHA-256 of a model folder's weights (layer maps aside): what an ONNX export was made from."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).glob("*.safetensors")):
        if f.name == "layer_maps.safetensors":
            continue
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()
