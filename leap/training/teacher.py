"""The teacher-embedding cache (paper sec 4.1: targets are precomputed; the teacher never
runs during training).

What is stored, in the paper's notation: for every training sentence ``i`` (the order of
``sentences.parquet``) and every cached teacher layer ``l`` in ``layers`` (the union of
``pi(1..L_s)`` over every student of the workflow, plus ``L_t``), the teacher's mean-pooled
vector ``e_t^(l)`` (padding excluded, not normalised), float16.

Format: a folder with

- ``shard_00000.npy``, ``shard_00001.npy``, ...: float16 arrays ``[len(layers), n_k, d_t]``
  holding sentences ``k * shard_size ... k * shard_size + n_k - 1`` in file order, memory-mapped
  on load (``np.load(mmap_mode="r")``). Each is written atomically; its SHA-256 goes to
  ``shard_0000k.sha256`` after it, so a shard with a matching sidecar is complete.
- ``manifest.json``, written last (its presence means the cache is complete): teacher
  reference and folder hash (or hub revision), ``layers``, ``dim``, ``dtype``, ``n``,
  ``shard_size``, ``max_seq_length``, the sentences' SHA-256 and every shard's SHA-256.

A killed job resumes from the last complete shard; :class:`TeacherCache` checks the
manifest against the sentences and teacher it is asked for, and every shard's checksum.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from leap.core.hashing import sentences_checksum
from leap.errors import LeapError
from leap.files import atomic_path, save_npy, write_json

FORMAT_VERSION = 1

log = logging.getLogger(__name__)


def required_layers(students: Iterable[tuple[int, Sequence[int] | None]], n_teacher: int) -> list[int]:
    """Teacher layers the losses read: ``pi(1..L_s)`` of every ``(L_s, layer_map)`` and ``L_t``."""
    from leap.training.config import uniform_layer_map

    need = {n_teacher}
    for n_student, layer_map in students:
        pi = list(layer_map) if layer_map else uniform_layer_map(n_student, n_teacher)
        bad = [p for p in pi if not 1 <= p <= n_teacher]
        if bad:
            raise LeapError(f"layer map {pi} points outside the teacher's layers 1..{n_teacher}")
        need.update(pi)
    return sorted(need)


def student_depth(student: str, n_layers: int | None) -> int:
    """Depth of a student: ``n_layers`` or the layer count of its initialisation's config."""
    if n_layers is not None:
        return int(n_layers)
    from transformers import AutoConfig

    from leap.serving.sources import resolve_model_ref

    ref = resolve_model_ref(student)
    cfg = AutoConfig.from_pretrained(ref)
    return int(getattr(cfg, "num_hidden_layers", None) or cfg.n_layers)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def teacher_identity(model_ref: str) -> dict:
    """Teacher id plus folder hash (local folder) or ``None`` revision (hub id)."""
    from leap.core.hashing import folder_hash
    from leap.serving.sources import resolve_model_ref

    path = resolve_model_ref(model_ref)
    return {"teacher": model_ref, "teacher_hash": folder_hash(path) if os.path.isdir(path) else None}


def _start_partial(out: Path, head: dict) -> Path:
    """Record the cache being built (``partial.json``); the shards of a partial cache from
    another run (other sentences, teacher or layers) are removed, never resumed."""
    partial = out / "partial.json"
    if partial.exists() and json.loads(partial.read_text()) != head:
        for f in out.glob("shard_*"):
            f.unlink()
    write_json(partial, head)
    return partial


def _complete_shard(out: Path, k: int, rows: int) -> dict | None:
    """Shard ``k``'s manifest entry if it is on disk and its checksum matches, else None."""
    npy, sha = out / f"shard_{k:05d}.npy", out / f"shard_{k:05d}.sha256"
    if npy.exists() and sha.exists() and sha.read_text().strip() == _sha256(npy):
        return {"file": npy.name, "rows": rows, "sha256": sha.read_text().strip()}
    return None


def _write_shard(out: Path, k: int, arr: np.ndarray) -> dict:
    """Write shard ``k`` (``[|layers|, n, d]`` float16) and its checksum, each atomically."""
    npy, sha = out / f"shard_{k:05d}.npy", out / f"shard_{k:05d}.sha256"
    save_npy(npy, arr)
    digest = _sha256(npy)
    with atomic_path(sha) as tmp:
        tmp.write_text(digest + "\n")
    return {"file": npy.name, "rows": arr.shape[1], "sha256": digest}


def build_teacher_cache(
    model_ref: str,
    sentences: Sequence[str],
    out_dir: str | os.PathLike,
    layers: Sequence[int] | None = None,
    students: Iterable[tuple[int, Sequence[int] | None]] = (),
    batch_size: int = 64,
    shard_size: int = 8192,
    max_seq_length: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    progress: bool = True,
    stop_after_shards: int | None = None,
    threads: int | None = None,
) -> dict:
    """Run the teacher once over ``sentences`` and cache the pooled vectors of ``layers``
    (or of :func:`required_layers` for ``students``). Resumes from complete shards.

    ``dtype="float16"`` runs the teacher in half precision (GPU only). ``stop_after_shards``
    stops early (for tests of the resume path). Returns the manifest.
    """
    from tqdm.auto import tqdm

    from leap.core.exit_config import ExitConfig
    from leap.serving.model import load_exit_model

    if threads:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    enc = load_exit_model(model_ref, exit=ExitConfig(strategy="none"), device=device, dtype=dtype, backend="torch")
    if max_seq_length is not None:
        enc.max_seq_length = int(max_seq_length)
    n_t = enc.num_layers
    dim = enc.get_embedding_dimension()
    layers = sorted(set(layers)) if layers else required_layers(students, n_t)
    bad = [l for l in layers if not 1 <= l <= n_t]
    if bad:
        raise LeapError(f"teacher {model_ref} has {n_t} layers; cannot cache layers {bad}")
    head = {
        "format": FORMAT_VERSION,
        **teacher_identity(model_ref),
        "layers": layers,
        "n_teacher_layers": n_t,
        "dim": dim,
        "dtype": "float16",
        "n": len(sentences),
        "shard_size": shard_size,
        "max_seq_length": enc.max_seq_length,
        "sentences_sha256": sentences_checksum(sentences),
    }
    partial = _start_partial(out, head)
    n_shards = (len(sentences) + shard_size - 1) // shard_size
    shards = []
    done_now = 0
    bar = tqdm(total=len(sentences), desc=f"teacher {Path(str(model_ref)).name}", unit="sent", disable=not progress)
    for k in range(n_shards):
        lo, hi = k * shard_size, min(len(sentences), (k + 1) * shard_size)
        kept = _complete_shard(out, k, hi - lo)
        if kept is not None:
            shards.append(kept)
            bar.update(hi - lo)
            continue
        if stop_after_shards is not None and done_now >= stop_after_shards:
            bar.close()
            log.info(f"stopped after {done_now} new shards (of {n_shards})")
            return {}
        v = enc.layer_embeddings(list(sentences[lo:hi]), batch_size=batch_size, layers=layers, on_batch=bar.update)
        shards.append(_write_shard(out, k, v.numpy().astype(np.float16)))  # [|layers|, n, d]
        done_now += 1
    bar.close()
    manifest = dict(head, shards=shards)
    write_json(out / "manifest.json", manifest)
    partial.unlink(missing_ok=True)
    log.info(f"cached layers {layers} of {model_ref} for {len(sentences)} sentences in {n_shards} shards")
    return manifest


@dataclass
class TeacherCache:
    """Read side of the cache: ``cache.get(indices) -> {layer: Tensor[B, d_t] float32}``."""

    root: Path
    manifest: dict
    shards: list[np.ndarray]
    offsets: np.ndarray  # [n_shards + 1] first row of each shard

    @classmethod
    def open(
        cls,
        root: str | os.PathLike,
        sentences: Sequence[str] | None = None,
        sentences_sha256: str | None = None,
        teacher: str | None = None,
        layers: Iterable[int] | None = None,
        verify: bool = True,
    ) -> TeacherCache:
        """Open a complete cache, refusing one built for other sentences, another teacher or
        without the needed layers, and (``verify``) any shard whose checksum differs."""
        root = Path(root)
        mf = root / "manifest.json"
        if not mf.exists():
            raise LeapError(f"no complete teacher cache at {root} (manifest.json missing); run the teacher_cache rule")
        manifest = json.loads(mf.read_text())
        if manifest.get("format") != FORMAT_VERSION:
            raise LeapError(
                f"teacher cache {root} has format {manifest.get('format')}, expected {FORMAT_VERSION}; rebuild it"
            )
        want = sentences_checksum(sentences) if sentences is not None else sentences_sha256
        if want is not None and want != manifest["sentences_sha256"]:
            raise LeapError(
                f"teacher cache {root} was built for other sentences (checksum {manifest['sentences_sha256'][:12]} "
                f"!= {want[:12]}); rebuild the cache for this sentence file"
            )
        if teacher is not None and teacher != manifest["teacher"]:
            raise LeapError(
                f"teacher cache {root} was built with teacher {manifest['teacher']!r}, not {teacher!r}; "
                f"rebuild the cache or point the run at the right teacher"
            )
        arrays = []
        for s in manifest["shards"]:
            path = root / s["file"]
            if not path.exists():
                raise LeapError(f"teacher cache {root}: shard {s['file']} is missing; rebuild the cache")
            if verify and _sha256(path) != s["sha256"]:
                raise LeapError(
                    f"teacher cache {root}: shard {s['file']} is corrupted (checksum mismatch); "
                    f"delete the cache folder and rebuild it"
                )
            a = np.load(path, mmap_mode="r")
            if a.shape != (len(manifest["layers"]), s["rows"], manifest["dim"]):
                raise LeapError(f"teacher cache {root}: shard {s['file']} has shape {a.shape}, manifest disagrees")
            arrays.append(a)
        offsets = np.cumsum([0] + [s["rows"] for s in manifest["shards"]])
        cache = cls(root, manifest, arrays, offsets)
        if layers is not None:
            cache.require(layers)
        return cache

    def require(self, layers: Iterable[int]) -> None:
        """Refuse a cache without the teacher layers a run reads."""
        missing = sorted(set(layers) - set(self.layers))
        if missing:
            raise LeapError(
                f"teacher cache {self.root} lacks teacher layers {missing} (has {self.layers}); "
                f"rebuild it with these layers"
            )

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    @property
    def num_teacher_layers(self) -> int:
        return int(self.manifest["n_teacher_layers"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def array(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """``[len(layers), B, d_t]`` float16 for sentence indices (any order)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise LeapError(f"sentence index out of range 0..{len(self) - 1}")
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        out = np.empty((len(self.layers), len(idx), self.dim), dtype=np.float16)
        for k in np.unique(shard):
            pos = np.nonzero(shard == k)[0]
            out[:, pos] = self.shards[k][:, idx[pos] - self.offsets[k]]
        return out

    def get(
        self, indices: Sequence[int] | np.ndarray | Tensor, layers: Iterable[int] | None = None
    ) -> dict[int, Tensor]:
        """``{teacher_layer: Tensor[B, d_t] float32}`` (the ``teacher`` argument of ``leap_loss``)."""
        if isinstance(indices, Tensor):
            indices = indices.cpu().numpy()
        arr = torch.from_numpy(self.array(indices).astype(np.float32))
        want = set(layers) if layers is not None else set(self.layers)
        return {l: arr[i] for i, l in enumerate(self.layers) if l in want}
