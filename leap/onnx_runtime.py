"""Early exit on ONNX Runtime, fp32 or int8 (issue "serving fast on CPU").

:func:`export_onnx` writes an exit-enabled model as *depth segments* into its folder
(``onnx/``): the embeddings plus the layers up to the first one the exit rule reads, then
one graph per further layer; each graph returns its hidden states and the mean-pooled
vector the rule reads. A single full-depth graph is written beside (the fair "ONNX Runtime
at full depth" baseline), and, on request, single graphs of the model cut at fixed layers
(``truncations``: static truncation, the frontier's baseline, served without segment
overhead). ``int8`` adds dynamically quantised copies (``onnxruntime.quantization``).
The manifest records the opset, the segment boundaries and the SHA-256 of the weights
they came from; a stale export is refused.

:class:`OnnxExitModel` runs the same Algorithm 1 over the segments: the rule is
:class:`leap.early_exit.ExitState` itself (one implementation for both engines), rows keep
their own exit state, exited rows leave the running batch and padding no running row needs
is trimmed; per-layer maps are applied when a row exits. The torch path and this one give
every sentence the same exit layer (ties within float noise of theta aside) and embeddings
within 1e-4 in fp32 (tests).

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
from torch import nn

from leap.config import ExitConfig
from leap.early_exit import ExitState, adapter_for
from leap.errors import LeapError
from leap.files import atomic_dir, write_json
from leap.layer_maps import LayerMaps
from leap.pooling import mean_pool

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
OPSET = 17


class _Segment(nn.Module):
    """Layers ``first..last`` (1-based) of a transformers model, optionally after the
    embeddings; returns ``(hidden [B, T, d], mean pool [B, d])``. The attention mask is the
    additive 4-D mask the eager attention takes (the same softmax as the torch path)."""

    def __init__(self, model: nn.Module, first: int, last: int, embed: bool) -> None:
        super().__init__()
        self.model, self.first, self.last, self.embed = model, first, last, embed
        self.ad = adapter_for(model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ad, m = self.ad, self.model
        hidden = ad.embed(m, x, mask) if self.embed else x
        mask4d = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        extra = ad.extra(m, hidden)
        layers = ad.layers(m)
        for l in range(self.first, self.last + 1):
            hidden = ad.call(layers[l - 1], hidden, mask4d, extra)
        return hidden, mean_pool(hidden, mask)


def _weights_sha(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        if f.name == "layer_maps.safetensors":
            continue
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def export_onnx(
    folder: str | os.PathLike, int8: bool = False, truncations: Sequence[int] = (), opset: int = OPSET
) -> dict:
    """Export the exit-enabled model in ``folder`` as depth segments into ``folder/onnx/``.

    The first segment ends at the first layer the model's saved rule reads
    (:meth:`ExitConfig.first_pooled_layer`); a rule that reads earlier layers needs a new
    export. ``truncations``: layers k at which to write one graph of layers 1..k
    (``truncated_k.onnx``), served for ``strategy="truncate", min_layer=k``. Returns the
    manifest (also ``onnx/manifest.json``).
    """
    from leap.exit_model import load_exit_model

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise LeapError("ONNX export needs onnx and onnxruntime: pip install -e .[onnx]") from None
    folder = Path(folder)
    if not (folder / "modules.json").exists():
        raise LeapError(f"{folder} is not a SentenceTransformer folder; run `leap convert` first")
    model = load_exit_model(str(folder), device="cpu")
    model.exit_module.model.set_attn_implementation("eager")  # one attention path the exporter traces exactly
    L = model.num_layers
    cfg = model.exit_config
    start = max(1, min(L, cfg.first_pooled_layer() if cfg.strategy != "none" else L))
    bad = [k for k in truncations if not 1 <= int(k) <= L]
    if bad:
        raise LeapError(f"truncation layers {bad} are outside 1..{L}")
    with atomic_dir(folder / ONNX_DIR) as tmp:
        manifest = _export_segments(model, tmp, start, truncations, int8, opset)
        manifest["weights_sha256"] = _weights_sha(folder)
        write_json(tmp / "manifest.json", manifest)
    log.info("exported %d segments (first ends at layer %d) to %s", len(manifest["segments"]) - 1, start, folder)
    return manifest


def _export_segments(
    model: Any, tmp: Path, start: int, truncations: Sequence[int], int8: bool, opset: int
) -> dict[str, Any]:
    """Write the depth segments, the full graph and the truncated graphs into ``tmp``; the manifest."""
    hf = model.exit_module.model
    L = model.num_layers
    feats = model.features(["a short sentence", "a somewhat longer sentence with more words in it"])
    ids, mask = feats["input_ids"], feats["attention_mask"]
    specs = [("full.onnx", 1, L, True), ("segment_00.onnx", 1, start, True)]
    specs += [(f"segment_{l:02d}.onnx", l, l, False) for l in range(start + 1, L + 1)]
    cuts = [(f"truncated_{k:02d}.onnx", 1, int(k), True) for k in sorted(set(truncations)) if int(k) < L]
    hidden = None
    with torch.no_grad():
        for name, first, last, embed in specs + cuts:
            seg = _Segment(hf, first, last, embed).eval()
            x = ids if embed else hidden
            dyn = {
                "x": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "hidden": {0: "batch", 1: "tokens"},
                "pooled": {0: "batch"},
            }
            torch.onnx.export(
                seg,
                (x, mask),
                str(tmp / name),
                input_names=["x", "attention_mask"],
                output_names=["hidden", "pooled"],
                dynamic_axes=dyn,
                opset_version=opset,
                dynamo=False,
            )
            if name.startswith("segment_"):
                hidden = seg(x, mask)[0]
    files = [s[0] for s in specs + cuts]
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        for name in files:
            quantize_dynamic(
                str(tmp / name), str(tmp / name.replace(".onnx", ".int8.onnx")), weight_type=QuantType.QInt8
            )
    manifest = {
        "opset": opset,
        "num_layers": L,
        "hidden_size": model.get_embedding_dimension(),
        "first_segment_end": start,
        "segments": [{"file": n, "first": f, "last": la, "embeddings": e} for n, f, la, e in specs],
        "truncations": {str(la): n for n, _, la, _ in cuts},
        "int8": int8,
        "exit_rule_at_export": model.exit_config.to_dict(),
        "inputs": "x: input_ids [B, T] int64 (embedding segments) or hidden [B, T, d]; attention_mask [B, T] int64",
        "outputs": "hidden [B, T, d], pooled [B, d] (mean over real tokens)",
    }
    return manifest


class OnnxExitModel:
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
        if self.manifest["weights_sha256"] != _weights_sha(self.folder):
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
        :mod:`leap.common_depth`), as the torch path's ``keep_layers``.
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

    def encode_with_layer_stack(
        self, sentences: Sequence[str], batch_size: int = 32, exit: ExitConfig | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(layer stack [N, L, d] float32, exit_layers [N])`` for common-depth scoring, as
        :meth:`leap.exit_model.ExitSentenceTransformer.encode_with_layer_stack`."""
        from leap.exit_model import ExitSentenceTransformer

        sents = self._texts(sentences)
        stack = np.zeros((len(sents), self.num_layers, self.manifest["hidden_size"]), dtype=np.float32)
        layers = np.zeros(len(sents), dtype=np.int64)
        for idx in ExitSentenceTransformer.length_batches(sents, batch_size) if sents else []:
            ids, mask = self.tokenize([sents[i] for i in idx])
            part = np.zeros((len(idx), *stack.shape[1:]), dtype=np.float32)
            _, layers[idx] = self.forward_batch(ids, mask, exit, stack=part)
            stack[idx] = part
        return stack, layers

    @staticmethod
    def _texts(sentences: Sequence[str]) -> list[str]:
        if isinstance(sentences, str):
            raise LeapError("sentences must be a list of str, not a single str; wrap it in a list")
        sents = list(sentences)
        bad = next((i for i, s in enumerate(sents) if not isinstance(s, str)), None)
        if bad is not None:
            raise LeapError(f"sentences[{bad}] is {type(sents[bad]).__name__}, expected str")
        return sents

    def encode_with_exit_layers(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        exit: ExitConfig | None = None,
        show_progress_bar: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings [N, d] float32, exit_layers [N])``, batches sorted by length."""
        from tqdm.auto import tqdm

        from leap.exit_model import ExitSentenceTransformer

        sents = self._texts(sentences)
        if not sents:
            return np.zeros((0, self.manifest["hidden_size"]), dtype=np.float32), np.zeros(0, dtype=np.int64)
        emb = np.zeros((len(sents), self.manifest["hidden_size"]), dtype=np.float32)
        layers = np.zeros(len(sents), dtype=np.int64)
        batches = ExitSentenceTransformer.length_batches(sents, batch_size)
        for idx in tqdm(batches, desc="Batches", disable=not show_progress_bar):
            ids, mask = self.tokenize([sents[i] for i in idx])
            emb[idx], layers[idx] = self.forward_batch(ids, mask, exit)
        return emb, layers

    def encode(self, sentences: Sequence[str], batch_size: int = 32, exit: ExitConfig | None = None) -> np.ndarray:
        return self.encode_with_exit_layers(sentences, batch_size, exit)[0]
