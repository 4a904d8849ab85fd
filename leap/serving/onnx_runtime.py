"""Early exit on ONNX Runtime, fp32 or int8, as the first module of a SentenceTransformer.

:class:`OnnxExitEngine` runs the depth segments that :func:`leap.serving.onnx_export.export_onnx`
writes into a model folder (``onnx/``) with the same Algorithm 1 as the torch path: the rule
is :class:`leap.core.early_exit.ExitState` itself (one implementation for both engines), rows
keep their own exit state, exited rows leave the running batch and padding no running row
needs is trimmed; per-layer maps are applied when a row exits.

:class:`OnnxExitTransformer` is a sentence-transformers input module around the engine:
``ExitSentenceTransformer(folder, backend="onnx")`` (or ``"onnx-int8"``) puts it where the
torch ``Transformer`` would be, so the model stays a ``SentenceTransformer`` and every
``encode``-family call, the exit rule per call and a monitor work as on torch. The torch path
and this one give every sentence the same exit layer (ties within float noise of theta
aside) and embeddings within 1e-4 in fp32 (tests).

Needs the ``onnx`` extra: ``pip install leap-exit[onnx]``.
"""

from __future__ import annotations

import logging
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


class OnnxExitEngine:
    """The ONNX Runtime sessions of one exported model folder and the exit loop over them.

    Args:
        folder: the model folder (with ``onnx/`` from :func:`export_onnx`), read once.
        int8: use the dynamically quantised graphs.
        threads: ONNX Runtime intra-op threads (default: its own choice).
    """

    def __init__(self, folder: ModelFolder, int8: bool = False, threads: int | None = None) -> None:
        ort = import_onnxruntime()
        path = folder.require_local("ONNX Runtime")
        manifest = folder.onnx_manifest
        if manifest is None:
            raise LeapError(f"{path} has no ONNX export; run `leap export {path}` first")
        if manifest["weights_sha256"] != folder.weights_sha256:
            raise LeapError(f"the ONNX export in {path} was made from other weights; export again")
        if int8 and not manifest["int8"]:
            raise LeapError(f"{path} has no int8 export; run `leap export {path} --int8`")
        self.folder, self.manifest, self.int8, self.threads = folder, manifest, int8, threads
        self.num_layers = int(manifest["num_layers"])
        self.dim = int(manifest["hidden_size"])
        self.layer_maps = folder.layer_maps
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: its graph-optimisation notices are not the user's concern
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        # One session per depth segment, run one after another: a pool that spin-waits after
        # its run keeps the cores the next segment's pool needs (measured: exit at 2 threads
        # ran 2-3x slower than at 1 thread with spinning on).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        suffix = ".int8.onnx" if int8 else ".onnx"
        self.sessions = {}
        names = [seg["file"] for seg in manifest["segments"]] + list(manifest.get("truncations", {}).values())
        for name in names:
            graph = path / ONNX_DIR / name.replace(".onnx", suffix)
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
        p = torch.from_numpy(pooled).float()
        if self.layer_maps is not None and layer < self.num_layers:
            p = self.layer_maps.apply(layer, p)
        return F.normalize(p, dim=-1) if normalize else p

    def forward_batch(
        self, ids: np.ndarray, mask: np.ndarray, cfg: ExitConfig, stack: np.ndarray | None = None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """One tokenised batch through the segments under the resolved rule ``cfg``:
        ``(embeddings [B, d], exit layers [B])``, embeddings normalised when the model is.

        ``stack``: a zeroed ``[B, L, d]`` array filled with each row's layer stack (normalised,
        mapped vectors at every layer it reached from the first one the rule reads;
        :mod:`leap.core.common_depth`), as the torch path's ``keep_layers``.
        """
        self.check(cfg)
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

    def __init__(self, folder: ModelFolder, exit: ExitConfig, int8: bool = False, threads: int | None = None) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        self.engine = OnnxExitEngine(folder, int8=int8, threads=threads)
        self.num_layers = self.engine.num_layers
        self.layer_maps = self.engine.layer_maps
        self.exit_config = exit.resolve(self.num_layers)
        self.engine.check(self.exit_config)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder.path))
        self.max_seq_length = folder.max_seq_length

    def resolve(self, exit: ExitConfig | dict | None) -> ExitConfig:
        if exit is None:
            return self.exit_config
        if isinstance(exit, dict):
            exit = ExitConfig.from_dict(exit)
        return exit.resolve(self.num_layers)

    def preprocess(self, inputs: Sequence[str], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        texts = [prompt + t for t in inputs] if prompt else list(inputs)
        f = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt")
        return {"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]}

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
        return {"precision": "int8" if self.engine.int8 else "fp32", "threads": self.engine.threads}

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        """Copy the exported folder (weights, tokenizer, ``onnx/``) and write the module's rule."""
        import shutil

        src = self.engine.folder.require_local("saving an ONNX Runtime model")
        shutil.copytree(src, output_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        self.exit_config.save(output_path, extra=self.engine.folder.records)

    def __repr__(self) -> str:
        e = self.engine
        return (
            f"OnnxExitTransformer(folder={str(e.folder.path)!r}, precision={'int8' if e.int8 else 'fp32'}, "
            f"threads={e.threads}, num_layers={self.num_layers})"
        )
