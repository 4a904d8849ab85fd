"""Early exit on ONNX Runtime, fp32 or int8 (issue "serving fast on CPU").

:class:`OnnxExitModel` serves the depth segments that :func:`leap.serving.onnx_export.export_onnx`
writes into a model folder (``onnx/``) with the same Algorithm 1 as the torch path: the
rule is :class:`leap.core.early_exit.ExitState` itself (one implementation for both engines),
rows keep their own exit state, exited rows leave the running batch and padding no running
row needs is trimmed; per-layer maps are applied when a row exits. It is an
:class:`leap.serving.encoder.ExitEncoder` and encodes through the same batching loop as the torch
model (:func:`leap.serving.encoder.encode_rows`), with ``encode`` taking the arguments
``SentenceTransformer.encode`` takes. The torch path and this one give every sentence the
same exit layer (ties within float noise of theta aside) and embeddings within 1e-4 in fp32
(tests).

Needs the ``onnx`` extra: ``pip install -e .[onnx]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leap.core.early_exit import ExitState
from leap.core.exit_config import ExitConfig
from leap.core.layer_maps import LayerMaps
from leap.errors import LeapError
from leap.serving.encoder import BatchResult, ExitEncoderMethods, encode_rows

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"


def weights_sha(folder: Path) -> str:
    """SHA-256 of a model folder's weights (layer maps aside): what an export was made from."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        if f.name == "layer_maps.safetensors":
            continue
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


class OnnxExitModel(ExitEncoderMethods):
    """An exported exit-enabled model served by ONNX Runtime with early exit.

    Args:
        folder: the model folder (with ``onnx/`` from :func:`export_onnx`).
        exit: the rule (default: the folder's ``leap_exit.json``); it may not read a layer
            before the end of the first segment.
        int8: use the dynamically quantised segments.
        threads: ONNX Runtime intra-op threads (default: its own choice).
    """

    def __init__(
        self, folder: str | os.PathLike, exit: ExitConfig | None = None, int8: bool = False, threads: int | None = None
    ) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        mf = self.folder / ONNX_DIR / "manifest.json"
        if not mf.exists():
            raise LeapError(f"{self.folder} has no ONNX export; run `leap export {self.folder}` first")
        self.manifest = json.loads(mf.read_text())
        if self.manifest["weights_sha256"] != weights_sha(self.folder):
            raise LeapError(f"the ONNX export in {self.folder} was made from other weights; export again")
        if int8 and not self.manifest["int8"]:
            raise LeapError(f"{self.folder} has no int8 export; run `leap export {self.folder} --int8`")
        self.num_layers = int(self.manifest["num_layers"])
        self.exit_config = (exit or ExitConfig.load(self.folder) or ExitConfig()).resolve(self.num_layers)
        self._check(self.exit_config)
        self.layer_maps = LayerMaps.load(self.folder)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        st_cfg = self.folder / "sentence_bert_config.json"
        self.max_seq_length = json.loads(st_cfg.read_text()).get("max_seq_length", 512) if st_cfg.exists() else 512
        modules = json.loads((self.folder / "modules.json").read_text())
        self.normalize = any(m["type"].endswith("Normalize") for m in modules)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        # One session per depth segment, run one after another: a pool that spin-waits after
        # its run keeps the cores the next segment's pool needs (measured: exit at 2 threads
        # ran 2-3x slower than at 1 thread with spinning on).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        suffix = ".int8.onnx" if int8 else ".onnx"
        self.sessions = {}
        names = [seg["file"] for seg in self.manifest["segments"]] + list(self.manifest.get("truncations", {}).values())
        for name in names:
            path = self.folder / ONNX_DIR / name.replace(".onnx", suffix)
            self.sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.int8 = int8

    def _check(self, cfg: ExitConfig) -> None:
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

    def tokenize(self, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        f = self.tokenizer(
            list(sentences), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np"
        )
        return f["input_ids"].astype(np.int64), f["attention_mask"].astype(np.int64)

    def _finish(self, pooled: np.ndarray, layer: int) -> torch.Tensor:
        p = torch.from_numpy(pooled).float()
        if self.layer_maps is not None and layer < self.num_layers:
            p = self.layer_maps.apply(layer, p)
        return F.normalize(p, dim=-1) if self.normalize else p

    def forward_batch(
        self, ids: np.ndarray, mask: np.ndarray, exit: ExitConfig | None = None, stack: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One tokenised batch through the segments: ``(embeddings [B, d], exit layers [B])``.

        ``stack``: a zeroed ``[B, L, d]`` array filled with each row's layer stack (normalised,
        mapped vectors at every layer it reached from the first one the rule reads;
        :mod:`leap.core.common_depth`), as the torch path's ``keep_layers``.
        """
        cfg = (exit or self.exit_config).resolve(self.num_layers)
        self._check(cfg)
        L, bsz = self.num_layers, ids.shape[0]

        def keep(idx: np.ndarray, layer: int, pooled: np.ndarray) -> None:
            if stack is not None:
                p = torch.from_numpy(pooled).float()
                if self.layer_maps is not None and layer < L:
                    p = self.layer_maps.apply(layer, p)
                stack[idx, layer - 1] = F.normalize(p, dim=-1).numpy()

        if cfg.strategy == "none" and not cfg.monitor_only:
            _, pooled = self._run("full.onnx", ids, mask)
            keep(np.arange(bsz), L, pooled)
            return self._finish(pooled, L).numpy(), np.full(bsz, L, dtype=np.int64)
        cut = self.manifest.get("truncations", {}).get(str(cfg.min_layer))
        if cfg.strategy == "truncate" and cut is not None:
            _, pooled = self._run(cut, ids, mask)
            keep(np.arange(bsz), cfg.min_layer, pooled)
            return self._finish(pooled, cfg.min_layer).numpy(), np.full(bsz, cfg.min_layer, dtype=np.int64)
        out = torch.zeros(bsz, self.manifest["hidden_size"])
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
            out[torch.as_tensor(rows[ex])] = self._finish(pooled[ex], l)
            exit_layer[rows[ex]] = l
            if ex.all():
                return out.numpy(), exit_layer
            kept = np.flatnonzero(~ex)
            rows, hidden, mask = rows[kept], hidden[kept], mask[kept]
            state.keep(torch.as_tensor(kept))
            t = int(mask.sum(axis=1).max())  # trim padding no running row needs (right padding)
            hidden, mask = np.ascontiguousarray(hidden[:, :t]), np.ascontiguousarray(mask[:, :t])
        keep(rows, L, pooled)
        out[torch.as_tensor(rows)] = self._finish(pooled, L)
        return out.numpy(), exit_layer

    def served_layers(self) -> list[int]:
        """The layers (1-based) this export can return a pooled vector of in one pass: every
        layer from the first segment's end, and those with a truncation graph below it."""
        start = self.manifest["first_segment_end"]
        cuts = [int(k) for k in self.manifest.get("truncations", {}) if int(k) < start]
        return sorted(cuts) + list(range(start, self.num_layers + 1))

    def layer_embeddings(self, sentences: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """``[L, N, d]`` pooled (not normalised, not mapped) vectors of every layer, as the torch
        model's ``layer_embeddings``, from this export's own graphs (so int8 vectors for an
        int8 model); a layer outside :meth:`served_layers` is NaN."""
        from leap.serving.encoder import check_texts, length_batches

        sents = check_texts(sentences)
        start, L = self.manifest["first_segment_end"], self.num_layers
        out = torch.full((L, len(sents), self.get_embedding_dimension()), float("nan"))
        for idx in length_batches(sents, batch_size) if sents else []:
            ids, mask = self.tokenize([sents[i] for i in idx])
            rows = torch.as_tensor(idx)
            for k, name in self.manifest.get("truncations", {}).items():
                if int(k) < start:
                    out[int(k) - 1, rows] = torch.from_numpy(self._run(name, ids, mask)[1]).float()
            hidden, pooled = self._run("segment_00.onnx", ids, mask)
            out[start - 1, rows] = torch.from_numpy(pooled).float()
            for l in range(start + 1, L + 1):
                hidden, pooled = self._run(f"segment_{l:02d}.onnx", hidden, mask)
                out[l - 1, rows] = torch.from_numpy(pooled).float()
        return out

    def embed_vectors(self, layer_vectors: torch.Tensor) -> torch.Tensor:
        """``[L, N, d]`` -> what a sample stopped at each layer returns (the per-layer maps'
        images when the folder has maps), as the torch model's ``embed_vectors``."""
        maps = self.layer_maps
        return layer_vectors if maps is None else maps.apply_all(layer_vectors.float())

    # -- the ExitEncoder interface (leap.serving.encoder) ----------------------------------------------
    def get_embedding_dimension(self) -> int:
        return int(self.manifest["hidden_size"])

    def encode_batches(
        self,
        sentences: Sequence[str],
        batch_size: int,
        exit: ExitConfig | dict | None,
        prompt: str | None,
        show_progress_bar: bool,
        keep_layers: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        cfg = ExitConfig.from_dict(exit) if isinstance(exit, dict) else exit
        shape = (self.num_layers, self.get_embedding_dimension())

        def run(texts: list[str]) -> BatchResult:
            ids, mask = self.tokenize([prompt + t for t in texts] if prompt else texts)
            stack = np.zeros((len(texts), *shape), dtype=np.float32) if keep_layers else None
            emb, layers = self.forward_batch(ids, mask, cfg, stack=stack)
            return BatchResult(emb, layers, stack)

        return encode_rows(
            sentences, batch_size, run, shape[1], shape[0], keep_layers=keep_layers, show_progress_bar=show_progress_bar
        )

    def encode(
        self,
        inputs: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: str | None = "sentence_embedding",
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        exit: ExitConfig | dict | None = None,
        **kwargs: Any,
    ) -> np.ndarray | torch.Tensor | list[Any]:
        """``SentenceTransformer.encode``'s arguments, served on ONNX Runtime with early exit.

        ``output_value``: ``"sentence_embedding"`` (default) or ``None`` (one dict a row with
        ``sentence_embedding`` and ``exit_layer``); ``precision``: as sentence-transformers
        quantises embeddings; ``exit``: the rule for this call only. Token embeddings, a
        device other than the CPU, ``prompt_name`` and the multi-process pool are torch
        only: asking for them is one error naming the torch engine.
        """
        if kwargs:
            raise LeapError(f"encode() on ONNX Runtime does not take {sorted(kwargs)}; load the torch engine for them")
        if output_value not in ("sentence_embedding", None):
            raise LeapError(f"output_value {output_value!r} needs the torch engine; ONNX Runtime serves embeddings")
        if device not in (None, "cpu"):
            raise LeapError(f"ONNX Runtime serves on the CPU here; device {device!r} needs the torch engine")
        if prompt_name is not None:
            raise LeapError("prompt_name needs the torch engine (its prompts); pass the prompt text as prompt=")
        single = isinstance(inputs, str)
        texts = [inputs] if single else inputs
        show = bool(show_progress_bar) if show_progress_bar is not None else False
        emb, layers, _ = self.encode_batches(texts, batch_size, exit, prompt, show, False)
        out = torch.from_numpy(emb)
        if truncate_dim is not None:
            out = out[:, :truncate_dim]
        if normalize_embeddings:
            out = F.normalize(out, dim=-1)
        if output_value is None:
            rows = [{"sentence_embedding": e, "exit_layer": torch.tensor(int(l))} for e, l in zip(out, layers)]
            return rows[0] if single else rows
        result: Any = out
        if precision != "float32":
            from sentence_transformers.util.quantization import quantize_embeddings

            result = torch.from_numpy(quantize_embeddings(out.numpy(), precision=precision))
        if not convert_to_tensor:
            result = result.numpy() if convert_to_numpy else list(result)
        return result[0] if single else result

    def similarity(self, a: Any, b: Any) -> torch.Tensor:
        """Cosine similarity matrix ``[len(a), len(b)]``, as ``SentenceTransformer.similarity``."""
        from sentence_transformers.util import cos_sim

        return cos_sim(torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b)))
