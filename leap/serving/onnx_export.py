"""Export an exit-enabled model for ONNX Runtime as depth segments.

:func:`export_onnx` writes the model into its folder (``onnx/``): the embeddings plus the
layers up to the first one the exit rule reads, then one graph per further layer; each
graph returns its hidden states and the mean-pooled vector the rule reads. A single
full-depth graph is written beside (the fair "ONNX Runtime at full depth" baseline), and,
on request, single graphs of the model cut at fixed layers (``truncations``: static
truncation, the frontier's baseline, served without segment overhead). ``int8`` adds
dynamically quantised copies (``onnxruntime.quantization``, per-channel weights: measured on
all-MiniLM-L6-v2, as fast as per-tensor and nearer fp32; static and QDQ quantisation were
slower and further from fp32 on the CPU, and are not used).

Where ONNX Runtime's transformer optimizer (``onnxruntime.transformers.optimizer``) fuses the
attention of every layer (BERT-family models), each graph also gets a fused copy
(``*.fused.onnx``: one Attention, SkipLayerNormalization and BiasGelu kernel per layer instead
of dozens of small ops) and its int8 copy (``*.fused.int8.onnx``), served as the backends
``onnx-fused`` and ``onnx-fused-int8``. Whether they are faster depends on the CPU, the
ONNX Runtime version and the batch: ``leap calibrate --paths auto`` measures them beside the
plain graphs. An architecture the optimizer cannot fuse keeps the plain graphs, with one log
line. The manifest records the
opset, the segment boundaries and the SHA-256 of the weights they came from
(:func:`leap.core.hashing.weights_sha`); :class:`leap.serving.onnx_runtime.OnnxExitEngine` refuses a
stale export.

Needs the ``onnx`` extra: ``pip install leap-exit[onnx]``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leap.core.early_exit import adapter_for
from leap.core.pooling import mean_pool
from leap.core.quiet import third_party_to_log
from leap.errors import LeapError
from leap.files import atomic_dir, check_output_folder, write_json
from leap.serving.folder import ONNX_DIR, ModelFolder
from leap.serving.model import load_exit_model

log = logging.getLogger(__name__)

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
        mask4d = additive_mask(mask, hidden.dtype)
        extra = ad.extra(m, hidden)
        layers = ad.layers(m)
        for l in range(self.first, self.last + 1):
            hidden = ad.call(layers[l - 1], hidden, mask4d, extra)
        return hidden, mean_pool(hidden, mask)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, 1, T, T]``: 0 where a token may be attended to, the dtype's minimum at padding,
    built the way ONNX Runtime's transformer optimizer recognises as an attention mask
    (unsqueeze, expand, cast, ``1 - m``, masked fill), so that it can fuse the attention."""
    bsz, t = mask.shape
    inverted = 1.0 - mask.unsqueeze(1).unsqueeze(2).expand(bsz, 1, t, t).to(dtype)
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


def export_onnx(
    folder: str | os.PathLike | ModelFolder,
    int8: bool = False,
    truncations: Sequence[int] = (),
    opset: int = OPSET,
    first_segment_end: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Export the exit-enabled model in ``folder`` as depth segments into ``folder/onnx/``.

    The first segment ends at the first layer the model's saved rule reads
    (:meth:`ExitConfig.first_pooled_layer`; ``first_segment_end`` sets it instead, for a
    sweep of rules); a rule that reads earlier layers needs a new export. ``truncations``:
    layers k at which to write one graph of layers 1..k (``truncated_k.onnx``), served for
    ``strategy="truncate", min_layer=k``. ``int8`` adds dynamically quantised copies. Fused
    copies of every graph are added where the optimizer fuses every layer's attention.

    An export adds to what the folder holds, never takes away: graphs of an earlier export
    of the same weights (its cuts, its int8 copies, an earlier first segment end) and those
    the folder's serving record needs are written again beside the new ones. The new
    ``onnx/`` replaces the old one only once complete. Returns the manifest (also
    ``onnx/manifest.json``). An ``onnx/`` that this package did not write (no manifest) is
    replaced only with ``overwrite``.
    """
    for module in ("onnx", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            raise LeapError("ONNX export needs onnx and onnxruntime: pip install leap-exit[onnx]")
    info = ModelFolder.read(folder)
    path = info.require_local("ONNX export")
    if not (path / "modules.json").exists():
        raise LeapError(f"{path} is not a SentenceTransformer folder; run `leap convert` first")
    target = check_output_folder(path / ONNX_DIR, "manifest.json", overwrite=overwrite)
    with third_party_to_log(log):
        return _export(info, target, int8, truncations, opset, first_segment_end)


def _export(
    info: ModelFolder, target: Path, int8: bool, truncations: Sequence[int], opset: int, first_segment_end: int | None
) -> dict:
    """:func:`export_onnx` once its output is checked."""
    model = load_exit_model(info, device="cpu", backend="torch")
    model.exit_module.model.set_attn_implementation("eager")  # one attention path the exporter traces exactly
    L = model.num_layers
    cfg = model.exit_config
    if first_segment_end is None:
        first_segment_end = cfg.first_pooled_layer() if cfg.strategy != "none" else L
    bad = [k for k in truncations if not 1 <= int(k) <= L]
    if bad:
        raise LeapError(f"truncation layers {bad} are outside 1..{L}")
    sha = info.weights_sha256
    start, int8, cuts = _kept(info, sha, L, int(first_segment_end), int8, set(map(int, truncations)))
    with atomic_dir(target) as tmp:
        manifest = _export_segments(model, tmp, max(1, min(L, start)), sorted(cuts), int8, opset)
        manifest["weights_sha256"] = sha
        write_json(tmp / "manifest.json", manifest)
    log.info("exported %d segments (first ends at layer %d) to %s", len(manifest["segments"]) - 1, start, target)
    return manifest


def _kept(
    info: ModelFolder, sha: str, num_layers: int, start: int, int8: bool, cuts: set[int]
) -> tuple[int, bool, set[int]]:
    """``(first segment end, int8, cuts)`` of an export that keeps what the folder's earlier
    export of the same weights held and what its serving record needs."""
    old = info.onnx_manifest
    if old is not None and old.get("weights_sha256") == sha:
        start = min(start, int(old["first_segment_end"]))
        int8 = int8 or bool(old.get("int8"))
        cuts |= {int(k) for k in old.get("truncations", {})}
    rec = info.serving
    if rec is not None and rec["backend"] != "torch" and info.exit is not None:
        rule = info.exit.resolve(num_layers)
        int8 = int8 or rec["backend"].endswith("int8")
        if rule.strategy == "truncate":
            cuts.add(rule.min_layer)
        elif rule.strategy != "none":
            start = min(start, rule.first_pooled_layer())
    return start, int8, {k for k in cuts if k < num_layers}


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
    files = {s[0]: s[2] - s[1] + 1 for s in specs + cuts}  # file -> number of layers
    fused = fuse_graphs(tmp, files, hf.config)
    if int8:
        for name in files:
            quantize_int8(tmp / name, tmp / name.replace(".onnx", ".int8.onnx"))
            if fused is not None:
                quantize_int8(tmp / fused_name(name), tmp / fused_name(name).replace(".onnx", ".int8.onnx"), fused=True)
    manifest = {
        "opset": opset,
        "num_layers": L,
        "hidden_size": model.get_embedding_dimension(),
        "first_segment_end": start,
        "segments": [{"file": n, "first": f, "last": la, "embeddings": e} for n, f, la, e in specs],
        "truncations": {str(la): n for n, _, la, _ in cuts},
        "int8": int8,
        "int8_quantization": "dynamic, per-channel int8 weights (onnxruntime.quantization.quantize_dynamic)",
        "fused": fused,
        "exit_rule_at_export": model.exit_config.to_dict(),
        "inputs": "x: input_ids [B, T] int64 (embedding segments) or hidden [B, T, d]; attention_mask [B, T] int64",
        "outputs": "hidden [B, T, d], pooled [B, d] (mean over real tokens)",
    }
    return manifest


def fused_name(name: str) -> str:
    """``segment_03.onnx`` -> ``segment_03.fused.onnx``."""
    return name.replace(".onnx", ".fused.onnx")


def quantize_int8(src: Path, dst: Path, fused: bool = False) -> None:
    """Dynamic int8 quantisation with per-channel weights (``src`` -> ``dst``). A fused graph's
    contrib ops carry no shape information for the quantiser: their outputs are declared fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT} if fused else {}
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, extra_options=extra)


def fuse_graphs(tmp: Path, files: dict[str, int], config: Any) -> dict[str, Any] | None:
    """Fused copies (:func:`fused_name`) of every graph in ``files`` (file -> its number of
    layers) by ONNX Runtime's transformer optimizer, at its offline level only (no
    machine-specific kernels baked in); written only when every graph's every layer got a
    fused Attention. Returns what the manifest records of it, or ``None`` (one log line)."""
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    optimized, stats = {}, {}
    for name, layers in files.items():
        model = optimize_model(str(tmp / name), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
        ops = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
        if ops.get("Attention", 0) != layers:
            log.info(
                "ONNX Runtime's optimizer fused the attention of %d of %d layers of %s (%s): the plain graphs are "
                "served, without fused copies",
                ops.get("Attention", 0),
                layers,
                name,
                getattr(config, "model_type", "?"),
            )
            return None
        optimized[name], stats[name] = model, ops
    for name, model in optimized.items():
        model.save_model_to_file(str(tmp / fused_name(name)))
    return {"optimizer": "onnxruntime.transformers.optimizer, model_type bert, opt_level 0", "operators": stats}
