"""One pass of layer vectors shared by two evaluations of one checkpoint.

A checkpoint evaluated as published and exit-enabled here with fitted per-layer maps has the
same raw pooled vectors at every layer (the maps act after pooling): the workflow's
``published_vectors`` rule encodes each BEIR set once (:func:`run_layer_vectors`) and both
BEIR evaluations read the file (:func:`read_layer_vectors`), checked against their own texts
and token cap.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence

import torch

from leap.errors import LeapError
from leap.workflow.eval_engine import load_model, setup_threads

log = logging.getLogger(__name__)


def texts_sha256(texts: Sequence[str]) -> str:
    """SHA-256 of a list of texts, in order."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()


def run_layer_vectors(
    model: str,
    folder: str,
    out_path: str,
    batch_size: int = 64,
    max_seq_length: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    engine: str = "torch",
) -> None:
    """The ``[L, N, d]`` raw pooled vectors of every layer of ``model`` over one BEIR set's
    texts (:meth:`~leap.workflow.data.RetrievalSet.pass_texts`), written once (safetensors, atomically)
    with the texts' hash, the token cap and the seconds the pass took."""
    from safetensors.torch import save_file

    from leap.files import atomic_path
    from leap.workflow.data import RetrievalSet

    setup_threads(threads)
    m = load_model(str(model), device, engine)
    if max_seq_length is not None and max_seq_length < m.max_seq_length:
        m.max_seq_length = max_seq_length
    texts = RetrievalSet.load(folder).pass_texts()
    t0 = time.perf_counter()
    v = m.layer_embeddings(texts, batch_size=batch_size)  # [L, N, d]
    seconds = time.perf_counter() - t0
    meta = {"texts_sha256": texts_sha256(texts), "max_seq_length": str(m.max_seq_length), "seconds": repr(seconds)}
    with atomic_path(out_path, needed=v.numel() * 4) as tmp:
        save_file({"vectors": v.contiguous()}, str(tmp), metadata=meta)
    log.info("layer vectors %s of %d texts in %.1f s -> %s", tuple(v.shape), len(texts), seconds, out_path)


def read_layer_vectors(path: str, texts: Sequence[str], max_seq_length: int) -> tuple[torch.Tensor, float]:
    """Vectors written by :func:`run_layer_vectors`, and the seconds they took; refused in one
    line when they were made from other texts or another token cap."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        v = f.get_tensor("vectors")
    if meta.get("texts_sha256") != texts_sha256(texts) or meta.get("max_seq_length") != str(max_seq_length):
        raise LeapError(
            f"{path} was made from other texts or another token cap than this evaluation's "
            f"({max_seq_length} tokens); delete it and rerun"
        )
    return v, float(meta["seconds"])
