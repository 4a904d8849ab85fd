"""Early exit on ONNX Runtime, fp32 or int8, as the first module of a SentenceTransformer.

:class:`OnnxExitEngine` runs the depth segments that :func:`leap.serving.onnx_export.export_onnx`
writes into a model folder (``onnx/``) with the same Algorithm 1 as the torch path: the rule
is :class:`leap.core.early_exit.ExitState` itself (one implementation for both engines), rows
keep their own exit state, exited rows leave the running batch and padding no running row
needs is trimmed; per-layer maps are applied when a row exits.

:class:`OnnxExitTransformer` is a sentence-transformers input module around the engine:
``ExitSentenceTransformer(folder, backend="onnx")`` (or ``"onnx-int8"``, ``"onnx-fused"``,
``"onnx-fused-int8"``: :data:`GRAPHS`) puts it where the
torch ``Transformer`` would be, so the model stays a ``SentenceTransformer`` and every
``encode``-family call, the exit rule per call and a monitor work as on torch. The torch path
and this one give every sentence the same exit layer (ties within float noise of theta
aside) and embeddings within 1e-4 in fp32 (tests).

A batch is never padded beyond its own longest text, and the engine splits it further: its rows
sorted by length, into runs of at most :data:`TOKENS_PER_THREAD` padded tokens per thread,
each trimmed to its own longest row. On one thread, 512 STS-B sentences in requests of 32 took
45.5 ms per request in runs of 4 rows against 92.0 ms as whole padded batches (all-MiniLM-L6-v2,
int8; ``benchmarks/onnx_graphs.py``): a short sentence no longer pays for the longest one's padding.

Needs the ``onnx`` extra: ``pip install leap-exit[onnx]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers.base.modules.input_module import InputModule

from leap.core.early_exit import ExitState
from leap.core.exit_config import ExitConfig
from leap.errors import LeapError
from leap.serving.folder import ONNX_DIR, ModelFolder

log = logging.getLogger(__name__)


def import_onnxruntime() -> Any:
    """``onnxruntime``, or one error naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise LeapError("ONNX Runtime is not installed: pip install leap-exit[onnx]") from None
    return onnxruntime


GRAPHS = {
    "onnx": ".onnx",
    "onnx-int8": ".int8.onnx",
    "onnx-fused": ".fused.onnx",
    "onnx-fused-int8": ".fused.int8.onnx",
}
"""Backend -> the suffix of its graph files in ``onnx/`` (:mod:`leap.serving.onnx_export`)."""

TOKENS_PER_THREAD = 128
"""Padded tokens per ONNX Runtime thread in one run of a graph: a batch is split into
length-sorted runs of at most this many times the threads (measured on all-MiniLM-L6-v2, int8
and fp32: runs of 4-8 short sentences were fastest on one thread, 8-16 on two)."""


def length_runs(mask: np.ndarray, tokens: int) -> list[np.ndarray]:
    """The rows of a ``[B, T]`` mask in runs for one graph call each: sorted by length, a run
    grows while its rows times its longest row stays within ``tokens`` (at least one row)."""
    lengths = mask.sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    runs, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or (i - start + 1) * int(lengths[order[i]]) > tokens:
            runs.append(order[start:i])
            start = i
    return runs


def backend_tokenizer(tokenizer: Any, max_length: int | None) -> Any:
    """A copy of a fast tokenizer's Rust backend (``tokenizers.Tokenizer``) that truncates at
    ``max_length`` and pads to the longest text on the right, as ``tokenizer(texts,
    padding=True, truncation=True, max_length=...)`` does; ``None`` when the tokenizer has no
    such backend or pads on the left."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "padding_side", "right") != "right" or tokenizer.pad_token is None:
        return None
    from tokenizers import Tokenizer

    tk = Tokenizer.from_str(backend.to_str())
    limit = max_length or getattr(tokenizer, "model_max_length", None)
    if limit and limit < 1_000_000:
        tk.enable_truncation(max_length=int(limit))
    else:
        tk.no_truncation()
    tk.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token, pad_type_id=0)
    return tk


class OnnxExitEngine:
    """The ONNX Runtime sessions of one exported model folder and the exit loop over them.

    Args:
        folder: the model folder (with ``onnx/`` from :func:`export_onnx`), read once.
        backend: which graphs (:data:`GRAPHS`): plain or fused, fp32 or int8.
        threads: ONNX Runtime intra-op threads (default: its own choice).
    """

    def __init__(self, folder: ModelFolder, backend: str = "onnx", threads: int | None = None) -> None:
        ort = import_onnxruntime()
        path = folder.require_local("ONNX Runtime")
        manifest = folder.onnx_manifest
        if manifest is None:
            raise LeapError(f"{path} has no ONNX export; run `leap export {path}` first")
        if manifest["weights_sha256"] != folder.weights_sha256:
            raise LeapError(f"the ONNX export in {path} was made from other weights; export again")
        if backend not in GRAPHS:
            raise LeapError(f"ONNX Runtime backend must be one of {', '.join(GRAPHS)}, got {backend!r}")
        int8 = backend.endswith("int8")
        if int8 and not manifest["int8"]:
            raise LeapError(f"{path} has no int8 export; run `leap export {path} --int8`")
        if "fused" in backend and not manifest.get("fused"):
            raise LeapError(
                f"{path} has no fused graphs: ONNX Runtime's optimizer cannot fuse this architecture, or the export "
                f"predates them; run `leap export {path}` again, or use backend='onnx'"
            )
        self.folder, self.manifest, self.backend, self.int8, self.threads = folder, manifest, backend, int8, threads
        self.run_tokens = TOKENS_PER_THREAD * (threads or os.cpu_count() or 1)
        self.num_layers = int(manifest["num_layers"])
        self.dim = int(manifest["hidden_size"])
        self.layer_maps = folder.layer_maps

        def options(spin: bool) -> Any:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3  # errors only: its graph-optimisation notices are not the user's concern
            if threads:
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
            if not spin:
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return opts

        # Depth segments run one after another, each in its own session: a pool that spin-waits
        # after its run keeps the cores the next segment's pool needs (measured: exit at 2 threads
        # ran 2-3x slower than at 1 thread with spinning on). A single graph (full depth, a cut)
        # runs alone and keeps ONNX Runtime's spinning: without it, 2 threads ran a single
        # sentence no faster than 1 (results/cpu/performance/fastembed_no_spinning.md).
        segment_opts, single_opts = options(spin=False), options(spin=True)
        suffix = GRAPHS[backend]
        self.sessions = {}
        for name in [seg["file"] for seg in manifest["segments"]] + list(manifest.get("truncations", {}).values()):
            graph = path / ONNX_DIR / name.replace(".onnx", suffix)
            opts = segment_opts if name.startswith("segment_") else single_opts
            self.sessions[name] = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])

    def check(self, cfg: ExitConfig) -> None:
        """One error when the export cannot serve the (resolved) rule ``cfg``."""
        start = self.manifest["first_segment_end"]
        if cfg.strategy == "truncate" and str(cfg.min_layer) in self.manifest.get("truncations", {}):
            return
        if cfg.strategy != "none" and cfg.first_pooled_layer() < start:
            raise LeapError(
                f"this rule reads layer {cfg.first_pooled_layer()}, but the export's first segment ends at "
                f"layer {start}; export again with the rule saved in leap_exit.json"
            )

    def _run(self, name: str, x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tuple(self.sessions[name].run(None, {"x": x, "attention_mask": mask}))

    def _finish(self, pooled: np.ndarray, layer: int, normalize: bool) -> torch.Tensor:
        if self.layer_maps is not None and layer < self.num_layers:
            p = self.layer_maps.apply(layer, torch.from_numpy(pooled).float())
            return F.normalize(p, dim=-1) if normalize else p
        p = pooled.astype(np.float32, copy=False)
        if normalize:  # as F.normalize: v / max(||v||, 1e-12)
            p = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
        return torch.from_numpy(p)

    def forward_batch(
        self, ids: np.ndarray, mask: np.ndarray, cfg: ExitConfig, stack: np.ndarray | None = None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """One tokenised batch through the segments under the resolved rule ``cfg``:
        ``(embeddings [B, d], exit layers [B])``, embeddings normalised when the model is.

        ``stack``: a zeroed ``[B, L, d]`` array filled with each row's layer stack (normalised,
        mapped vectors at every layer it reached from the first one the rule reads;
        :mod:`leap.core.common_depth`), as the torch path's ``keep_layers``. The rows run in
        length-sorted runs (:func:`length_runs`), each trimmed to its own longest row.
        """
        self.check(cfg)
        runs = length_runs(mask, self.run_tokens)
        if len(runs) == 1:
            t = int(mask.sum(axis=1).max())
            return self._forward_run(ids[:, :t], mask[:, :t], cfg, stack)
        out = torch.zeros(ids.shape[0], self.dim)
        exit_layer = np.zeros(ids.shape[0], dtype=np.int64)
        for rows in runs:
            t = int(mask[rows].sum(axis=1).max())
            sub = None if stack is None else np.zeros((len(rows), *stack.shape[1:]), stack.dtype)
            out[torch.as_tensor(rows)], exit_layer[rows] = self._forward_run(ids[rows, :t], mask[rows, :t], cfg, sub)
            if stack is not None:
                stack[rows] = sub
        return out, exit_layer

    def _forward_run(
        self, ids: np.ndarray, mask: np.ndarray, cfg: ExitConfig, stack: np.ndarray | None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """:meth:`forward_batch` on one run of rows (right padding, no column all padding)."""
        ids, mask = np.ascontiguousarray(ids), np.ascontiguousarray(mask)
        L, bsz, norm = self.num_layers, ids.shape[0], self.folder.normalize

        def keep(idx: np.ndarray, layer: int, pooled: np.ndarray) -> None:
            if stack is not None:
                stack[idx, layer - 1] = self._finish(pooled, layer, True).numpy()

        if cfg.strategy == "none" and not cfg.monitor_only:
            _, pooled = self._run("full.onnx", ids, mask)
            keep(np.arange(bsz), L, pooled)
            return self._finish(pooled, L, norm), np.full(bsz, L, dtype=np.int64)
        cut = self.manifest.get("truncations", {}).get(str(cfg.min_layer))
        if cfg.strategy == "truncate" and cut is not None:
            _, pooled = self._run(cut, ids, mask)
            keep(np.arange(bsz), cfg.min_layer, pooled)
            return self._finish(pooled, cfg.min_layer, norm), np.full(bsz, cfg.min_layer, dtype=np.int64)
        out = torch.zeros(bsz, self.dim)
        exit_layer = np.full(bsz, L, dtype=np.int64)
        rows = np.arange(bsz)
        state = ExitState(cfg, bsz, torch.device("cpu"))
        start = self.manifest["first_segment_end"]
        hidden, pooled = self._run("segment_00.onnx", ids, mask)
        for l in range(start, L + 1):
            if l > start:
                hidden, pooled = self._run(f"segment_{l:02d}.onnx", hidden, mask)
            if l == L or not state.needs_pool(l):
                continue
            keep(rows, l, pooled)
            exits, _ = state.step(l, torch.from_numpy(pooled))
            if exits is None or not bool(exits.any()):
                continue
            ex = exits.numpy()
            out[torch.as_tensor(rows[ex])] = self._finish(pooled[ex], l, norm)
            exit_layer[rows[ex]] = l
            if ex.all():
                return out, exit_layer
            kept = np.flatnonzero(~ex)
            rows, hidden, mask = rows[kept], hidden[kept], mask[kept]
            state.keep(torch.as_tensor(kept))
            t = int(mask.sum(axis=1).max())  # trim padding no running row needs (right padding)
            hidden, mask = np.ascontiguousarray(hidden[:, :t]), np.ascontiguousarray(mask[:, :t])
        keep(rows, L, pooled)
        out[torch.as_tensor(rows)] = self._finish(pooled, L, norm)
        return out, exit_layer

    def served_layers(self) -> list[int]:
        """The layers (1-based) this export can return a pooled vector of in one pass: every
        layer from the first segment's end, and those with a truncation graph below it."""
        start = self.manifest["first_segment_end"]
        cuts = [int(k) for k in self.manifest.get("truncations", {}) if int(k) < start]
        return sorted(cuts) + list(range(start, self.num_layers + 1))

    def layer_vectors(self, ids: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """``[L, B, d]`` pooled (not normalised, not mapped) vectors of one tokenised batch at
        every layer, from this export's own graphs; a layer outside :meth:`served_layers` is NaN."""
        out = torch.full((self.num_layers, ids.shape[0], self.dim), float("nan"))
        for rows in length_runs(mask, self.run_tokens):
            t = int(mask[rows].sum(axis=1).max())
            out[:, torch.as_tensor(rows)] = self._layer_vectors_run(
                np.ascontiguousarray(ids[rows, :t]), np.ascontiguousarray(mask[rows, :t])
            )
        return out

    def _layer_vectors_run(self, ids: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """:meth:`layer_vectors` on one run of rows."""
        start, L = self.manifest["first_segment_end"], self.num_layers
        out = torch.full((L, ids.shape[0], self.dim), float("nan"))
        for k, name in self.manifest.get("truncations", {}).items():
            if int(k) < start:
                out[int(k) - 1] = torch.from_numpy(self._run(name, ids, mask)[1]).float()
        hidden, pooled = self._run("segment_00.onnx", ids, mask)
        out[start - 1] = torch.from_numpy(pooled).float()
        for l in range(start + 1, L + 1):
            hidden, pooled = self._run(f"segment_{l:02d}.onnx", hidden, mask)
            out[l - 1] = torch.from_numpy(pooled).float()
        return out


class OnnxExitTransformer(InputModule):
    """A sentence-transformers input module that tokenises and runs an :class:`OnnxExitEngine`.

    ``forward(features, exit=None, keep_layers=False)`` sets ``sentence_embedding`` (each
    row's exit embedding, normalised when the model is), ``exit_layer [B]`` (1-based) and,
    with ``keep_layers``, ``layer_stack [B, L, d]``, as the torch module does. It has no
    weights: the model runs on the CPU, and ``save`` copies the exported folder.
    """

    forward_kwargs = {"exit", "keep_layers"}

    def __init__(
        self, folder: ModelFolder, exit: ExitConfig, backend: str = "onnx", threads: int | None = None
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        self.engine = OnnxExitEngine(folder, backend=backend, threads=threads)
        self.num_layers = self.engine.num_layers
        self.layer_maps = self.engine.layer_maps
        self.exit_config = exit.resolve(self.num_layers)
        self.engine.check(self.exit_config)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder.path))
        self.max_seq_length = folder.max_seq_length
        self._fast = (None, None)  # (max_seq_length it truncates at, backend tokenizer)

    def resolve(self, exit: ExitConfig | dict | None) -> ExitConfig:
        if exit is None:
            return self.exit_config
        if isinstance(exit, dict):
            exit = ExitConfig.from_dict(exit)
        return exit.resolve(self.num_layers)

    def preprocess(self, inputs: Sequence[str], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` ``[B, T]``, padded to the longest text, truncated
        at ``max_seq_length``: the tokenizer's own result, through its Rust backend directly
        where it has one (a tenth of a millisecond less per request; equal, tested)."""
        texts = [prompt + t for t in inputs] if prompt else list(inputs)
        if self.fast_tokenizer is not None and texts:
            enc = self.fast_tokenizer.encode_batch(texts)
            ids = torch.from_numpy(np.array([e.ids for e in enc], dtype=np.int64))
            return {"input_ids": ids, "attention_mask": torch.from_numpy(np.array([e.attention_mask for e in enc]))}
        f = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt")
        return {"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]}

    @property
    def fast_tokenizer(self) -> Any:
        """:func:`backend_tokenizer` at the current ``max_seq_length`` (rebuilt when it changes)."""
        if self._fast[0] != self.max_seq_length:
            self._fast = (self.max_seq_length, backend_tokenizer(self.tokenizer, self.max_seq_length))
        return self._fast[1]

    def forward(
        self, features: dict[str, Any], exit: ExitConfig | dict | None = None, keep_layers: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        cfg = self.resolve(exit)
        ids = features["input_ids"].cpu().numpy().astype(np.int64, copy=False)
        mask = features["attention_mask"].cpu().numpy().astype(np.int64, copy=False)
        stack = np.zeros((ids.shape[0], self.num_layers, self.engine.dim), np.float32) if keep_layers else None
        emb, layers = self.engine.forward_batch(ids, mask, cfg, stack=stack)
        features["sentence_embedding"] = emb
        features["exit_layer"] = torch.from_numpy(layers)
        if keep_layers:
            features["layer_stack"] = torch.from_numpy(stack)
        return features

    def get_embedding_dimension(self) -> int:
        return self.engine.dim

    def get_config_dict(self) -> dict[str, Any]:
        e = self.engine
        return {"backend": e.backend, "precision": "int8" if e.int8 else "fp32", "threads": e.threads}

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        """Copy the exported folder (weights, tokenizer, ``onnx/``) and write the module's rule."""
        import shutil

        src = self.engine.folder.require_local("saving an ONNX Runtime model")
        shutil.copytree(src, output_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        self.exit_config.save(output_path, extra=self.engine.folder.records)

    def __repr__(self) -> str:
        e = self.engine
        return (
            f"OnnxExitTransformer(folder={str(e.folder.path)!r}, backend={e.backend!r}, "
            f"threads={e.threads}, num_layers={self.num_layers})"
        )
