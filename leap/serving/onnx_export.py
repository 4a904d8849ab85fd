"""Export an exit-enabled model for ONNX Runtime as depth segments (issue "serving fast on CPU").

:func:`export_onnx` writes the model into its folder (``onnx/``): the embeddings plus the
layers up to the first one the exit rule reads, then one graph per further layer; each
graph returns its hidden states and the mean-pooled vector the rule reads. A single
full-depth graph is written beside (the fair "ONNX Runtime at full depth" baseline), and,
on request, single graphs of the model cut at fixed layers (``truncations``: static
truncation, the frontier's baseline, served without segment overhead). ``int8`` adds
dynamically quantised copies (``onnxruntime.quantization``). The manifest records the
opset, the segment boundaries and the SHA-256 of the weights they came from
(:func:`leap.serving.onnx_runtime.weights_sha`); :class:`leap.serving.onnx_runtime.OnnxExitModel` refuses a
stale export.

Needs the ``onnx`` extra: ``pip install -e .[onnx]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leap.core.early_exit import adapter_for
from leap.core.pooling import mean_pool
from leap.errors import LeapError
from leap.files import atomic_dir, write_json
from leap.serving.model import load_exit_model
from leap.serving.onnx_runtime import ONNX_DIR, weights_sha

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
        mask4d = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        extra = ad.extra(m, hidden)
        layers = ad.layers(m)
        for l in range(self.first, self.last + 1):
            hidden = ad.call(layers[l - 1], hidden, mask4d, extra)
        return hidden, mean_pool(hidden, mask)


def export_onnx(
    folder: str | os.PathLike,
    int8: bool = False,
    truncations: Sequence[int] = (),
    opset: int = OPSET,
    first_segment_end: int | None = None,
) -> dict:
    """Export the exit-enabled model in ``folder`` as depth segments into ``folder/onnx/``.

    The first segment ends at the first layer the model's saved rule reads
    (:meth:`ExitConfig.first_pooled_layer`; ``first_segment_end`` sets it instead, for a
    sweep of rules); a rule that reads earlier layers needs a new export. ``truncations``:
    layers k at which to write one graph of layers 1..k (``truncated_k.onnx``), served for
    ``strategy="truncate", min_layer=k``. Returns the manifest (also ``onnx/manifest.json``).
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise LeapError("ONNX export needs onnx and onnxruntime: pip install -e .[onnx]") from None
    folder = Path(folder)
    if not (folder / "modules.json").exists():
        raise LeapError(f"{folder} is not a SentenceTransformer folder; run `leap convert` first")
    model = load_exit_model(str(folder), device="cpu", backend="torch")
    model.exit_module.model.set_attn_implementation("eager")  # one attention path the exporter traces exactly
    L = model.num_layers
    cfg = model.exit_config
    if first_segment_end is None:
        first_segment_end = cfg.first_pooled_layer() if cfg.strategy != "none" else L
    start = max(1, min(L, int(first_segment_end)))
    bad = [k for k in truncations if not 1 <= int(k) <= L]
    if bad:
        raise LeapError(f"truncation layers {bad} are outside 1..{L}")
    with atomic_dir(folder / ONNX_DIR) as tmp:
        manifest = _export_segments(model, tmp, start, truncations, int8, opset)
        manifest["weights_sha256"] = weights_sha(folder)
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
