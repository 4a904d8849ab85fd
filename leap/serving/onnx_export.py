"""Export an exit-enabled model for ONNX Runtime as depth segments.

:func:`export_onnx` writes the model into its folder (``onnx/``): the embeddings plus the
layers up to the first one the exit rule reads, then one graph per further layer; each
graph returns its hidden states and the mean-pooled vector the rule reads. A single
full-depth graph is written beside (the fair "ONNX Runtime at full depth" baseline), and,
on request, single graphs of the model cut at fixed layers (``truncations``: static
truncation, the frontier's baseline, served without segment overhead). ``int8`` adds
dynamically quantised copies (``onnxruntime.quantization``). The manifest records the
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
        mask4d = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        extra = ad.extra(m, hidden)
        layers = ad.layers(m)
        for l in range(self.first, self.last + 1):
            hidden = ad.call(layers[l - 1], hidden, mask4d, extra)
        return hidden, mean_pool(hidden, mask)


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
    ``strategy="truncate", min_layer=k``. ``int8`` adds dynamically quantised copies.

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
        int8 = int8 or rec["backend"] == "onnx-int8"
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
