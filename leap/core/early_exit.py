"""Convergence-based early exit (paper Algorithm 1, Eq. 6): the rule and the layer loop.

For each layer ``l = 1..L`` the loop computes ``h^(l)`` and its mean-pooled vector
``p_l``; a sample exits at ``l`` when ``l >= l_min``, ``l > k`` and
``cos(p_l, p_{l-k}) >= theta`` and returns layer ``l``'s states. A sample that never
exits runs every layer. Batches give every sample the exit layer and embedding it gets
alone: each row carries its own exit state, and with ``compact=True`` exited rows leave
the running batch (and padding no remaining row needs is trimmed).

Strategies:

* ``convergence``: Eq. 6 above (``theta``, ``patience`` = k, ``min_layer``).
* ``pabee``: a counter of consecutive layers with ``cos(p_l, p_{l-1}) >= pabee_theta``;
  exit when it reaches ``pabee_patience`` and ``l >= min_layer`` (Table 10).
* ``truncate``: static truncation, every sample stops at ``min_layer`` (the trivial
  alternative every exit rule must beat; the frontier's baseline).
* ``none``: full depth.

This module is torch only; :mod:`leap.serving.model` puts the loop inside a
sentence-transformers module (:class:`leap.serving.model.ExitSentenceTransformer`).
The per-architecture code (how to embed, which modules are the layers, what extra input
a layer takes) lives in one table, :data:`ARCHITECTURES`: BERT (and MiniLM, TinyBERT),
MPNet and DistilBERT.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from leap.core.exit_config import ExitConfig
from leap.core.pooling import mean_pool_weights, pool_with
from leap.errors import LeapError

__all__ = [
    "ARCHITECTURES",
    "ArchAdapter",
    "ExitOutput",
    "ExitState",
    "adapter_for",
    "exit_forward",
    "layers_forward",
    "num_layers",
    "simulate_exit",
    "truncate_layers",
]


class ExitState:
    """Per-row exit bookkeeping for one running batch: the rule of :class:`ExitConfig`.

    ``step(l, p_l)`` takes the pooled vectors ``[B, d]`` of layer ``l`` for the rows still
    running and returns a bool ``[B]`` of rows that exit at ``l``. ``keep(idx)`` drops the
    other rows (compaction). The same object drives the fast path and the reference
    :func:`simulate_exit`, so the two cannot disagree on the rule.
    """

    def __init__(self, config: ExitConfig, batch_size: int, device: torch.device) -> None:
        if config.min_layer is None:
            raise LeapError("resolve the exit config against the model's depth first (ExitConfig.resolve)")
        self.cfg = config
        self.history: deque[Tensor] = deque(maxlen=max(config.patience, 1))  # e_{l-k..l-1}, [B, d] each
        self.counter = torch.zeros(batch_size, dtype=torch.long, device=device)  # PABEE

    def needs_pool(self, layer: int) -> bool:
        return self.cfg.strategy != "none" and layer >= self.cfg.first_pooled_layer()

    def step(self, layer: int, pooled: Tensor) -> tuple[Tensor | None, Tensor]:
        """Exit decisions at ``layer`` (1-based) for pooled vectors ``[B, d]``.

        Returns ``(exits, e_l)``: a bool ``[B]`` of rows that exit here (``None`` when
        no row can exit at this layer) and the L2-normalised pooled vectors ``[B, d]``
        (float32).
        """
        cfg = self.cfg
        p = pooled.float()
        # e_l = p_l / ||p_l||: two kernels instead of F.normalize's three (each small op
        # right after a layer runs cold on CPU, so the count matters at batch 1)
        unit = p / torch.linalg.vector_norm(p, dim=-1, keepdim=True).clamp_min(1e-12)  # [B, d]
        exits = None
        if cfg.strategy == "convergence":
            if layer >= cfg.min_layer and layer > cfg.patience:
                # cos(p_l, p_{l-k}) on unit vectors; history[0] is layer l-k
                exits = torch.linalg.vecdot(unit, self.history[0]) >= cfg.theta
        elif cfg.strategy == "pabee":
            if self.history:
                agree = torch.linalg.vecdot(unit, self.history[-1]) >= cfg.pabee_theta
                self.counter = torch.where(agree, self.counter + 1, torch.zeros_like(self.counter))
            if layer >= cfg.min_layer:
                exits = self.counter >= cfg.pabee_patience
        elif cfg.strategy == "truncate" and layer == cfg.min_layer:
            exits = torch.ones(unit.shape[0], dtype=torch.bool, device=unit.device)
        self.history.append(unit)
        if cfg.monitor_only:
            exits = None
        return exits, unit

    def keep(self, idx: Tensor) -> None:
        """Keep only rows ``idx`` (a LongTensor of row indices)."""
        self.history = deque((h.index_select(0, idx) for h in self.history), maxlen=self.history.maxlen)
        self.counter = self.counter.index_select(0, idx)


def simulate_exit(
    layer_vectors: Tensor | np.ndarray, config: ExitConfig, embed_vectors: Tensor | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reference exit decisions from the pooled vectors of a full pass.

    Args:
        layer_vectors: ``[L, N, d]`` pooled vectors of layers ``1..L``
            (:meth:`leap.serving.model.ExitSentenceTransformer.layer_embeddings`).
        config: the exit rule (``min_layer=None`` resolves from ``L``).
        embed_vectors: ``[L, N, d]`` what a sample that exits at ``l`` returns (its layer's
            vector after the model's per-layer maps, :mod:`leap.core.layer_maps`); default
            ``layer_vectors``. The rule always reads ``layer_vectors``.

    Returns:
        ``(embeddings [N, d] L2-normalised, exit_layers [N] 1-based)``. Used by the
        evaluation to sweep ``theta`` without re-encoding; the fast path must agree with it
        (tests check this).
    """
    v = _as_tensor(layer_vectors)
    n_layers, n = v.shape[0], v.shape[1]
    config = config.resolve(n_layers)
    state = ExitState(config, n, v.device)
    exit_layer = torch.full((n,), n_layers, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    for l in range(1, n_layers + 1):
        if state.needs_pool(l):
            exits, _ = state.step(l, v[l - 1])
            if exits is None:
                continue
            exits = exits & ~done
            exit_layer[exits] = l
            done |= exits
    rows = torch.arange(n)
    src = v if embed_vectors is None else _as_tensor(embed_vectors)
    emb = F.normalize(src[exit_layer - 1, rows], dim=-1)
    return emb.numpy(), exit_layer.numpy()


def _as_tensor(x: Tensor | np.ndarray) -> Tensor:
    return (x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))).float()


# ----------------------------------------------------------------------------------------
# Architecture adapters: the only per-architecture code.
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchAdapter:
    """How to run one architecture layer by layer.

    Attributes:
        embed: ``(model, input_ids [B, T], attention_mask [B, T]) -> hidden [B, T, d]``.
        layers: ``model -> ModuleList`` of the transformer layers, in order.
        extra: ``(model, hidden) -> extra input`` every layer takes (MPNet's relative
            position bias), recomputed whenever the batch shrinks; ``None`` if unused.
        call: ``(layer, hidden, mask4d, extra) -> hidden``.
        layer_parent: ``model -> module`` whose ``layer`` attribute holds the layers.
        depth_key: the config attribute holding the depth.
    """

    embed: Callable[[Any, Tensor, Tensor], Tensor]
    layers: Callable[[Any], Sequence[torch.nn.Module]]
    extra: Callable[[Any, Tensor], Any]
    call: Callable[[torch.nn.Module, Tensor, Any, Any], Tensor]
    layer_parent: Callable[[Any], torch.nn.Module]
    depth_key: str = "num_hidden_layers"


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


ARCHITECTURES: dict[str, ArchAdapter] = {
    # BERT, MiniLM (BertModel weights) and TinyBERT are all model_type "bert".
    "bert": ArchAdapter(
        embed=lambda m, ids, mask: m.embeddings(input_ids=ids),
        layers=lambda m: m.encoder.layer,
        extra=lambda m, h: None,
        call=lambda layer, h, mask, extra: _first(layer(h, mask)),
        layer_parent=lambda m: m.encoder,
    ),
    "mpnet": ArchAdapter(
        embed=lambda m, ids, mask: m.embeddings(input_ids=ids),
        layers=lambda m: m.encoder.layer,
        extra=lambda m, h: m.encoder.compute_position_bias(h),
        call=lambda layer, h, mask, extra: _first(layer(h, mask, extra)),
        layer_parent=lambda m: m.encoder,
    ),
    "distilbert": ArchAdapter(
        embed=lambda m, ids, mask: m.embeddings(ids),
        layers=lambda m: m.transformer.layer,
        extra=lambda m, h: None,
        call=lambda layer, h, mask, extra: _first(layer(h, mask)),
        layer_parent=lambda m: m.transformer,
        depth_key="n_layers",
    ),
}


def adapter_for(model: Any, name: str = "model") -> ArchAdapter:
    """The :class:`ArchAdapter` of a transformers model, or a :class:`LeapError` naming the supported ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise LeapError(f"{name}: architecture {model_type!r} is not supported; supported: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[model_type]


def num_layers(model: Any) -> int:
    """Depth of a transformers model the adapters know."""
    return len(adapter_for(model).layers(model))


def truncate_layers(model: Any, n_layers: int) -> None:
    """Keep the first ``n_layers`` transformer layers (a shallower student, or static truncation)."""
    ad = adapter_for(model)
    layers = ad.layers(model)
    if not 1 <= n_layers <= len(layers):
        raise LeapError(f"n_layers must lie in 1..{len(layers)} (the layers of this model), got {n_layers}")
    ad.layer_parent(model).layer = torch.nn.ModuleList(list(layers)[:n_layers])
    setattr(model.config, ad.depth_key, n_layers)


def _bidirectional_mask(model: Any, hidden: Tensor, attention_mask: Tensor) -> Any:
    """The attention mask the model's own forward would build (sdpa / eager alike)."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=attention_mask)


# ----------------------------------------------------------------------------------------
# The layer loop
# ----------------------------------------------------------------------------------------


@dataclass
class ExitOutput:
    """What one batch through the exit loop gives.

    Attributes:
        token_embeddings: ``[B, T, d]`` each row's states at its exit layer (after that
            layer's map, when the model has per-layer maps); padding positions hold 0.
        embeddings: ``[B, d]`` float32, L2-normalised mean pools of ``token_embeddings``.
        exit_layers: ``[B]`` long, 1-based.
        layer_stack: with ``keep_layers``: ``[B, L, d]`` float32, each row's normalised (and
            mapped) pooled vector at every layer it reached from the first one the rule
            reads; zeros elsewhere (:mod:`leap.core.common_depth`). Otherwise ``None``.
    """

    token_embeddings: Tensor
    embeddings: Tensor
    exit_layers: Tensor
    layer_stack: Tensor | None = None


class _ExitOutputs:
    """The outputs of one exit batch, filled as rows leave: each row's token states at its
    exit layer (mapped when the model has maps), its embedding, its exit layer and, with
    ``keep_layers``, its layer stack."""

    def __init__(self, bsz: int, seq: int, hidden: Tensor, n_layers: int, maps: Any, keep_layers: bool) -> None:
        dev, dim = hidden.device, hidden.shape[-1]
        self.n_layers, self.maps, self.shape = n_layers, maps, (bsz, seq, dim)
        self.tokens: Tensor | None = None  # allocated when the first row leaves early
        self.out = torch.zeros(bsz, dim, dtype=torch.float32, device=dev)
        self.exit_layer = torch.full((bsz,), n_layers, dtype=torch.long, device=dev)
        self.stack = torch.zeros(bsz, n_layers, dim, dtype=torch.float32, device=dev) if keep_layers else None

    def token_buffer(self, like: Tensor) -> Tensor:
        if self.tokens is None:
            self.tokens = torch.zeros(self.shape, dtype=like.dtype, device=like.device)
        return self.tokens

    def returned(self, layer: int, pooled: Tensor, unit: Tensor) -> Tensor:
        """What a row stopped at ``layer`` returns: ``unit``, or its map's normalised image."""
        if self.maps is not None and layer < self.n_layers:
            return F.normalize(self.maps.apply(layer, pooled.float()), dim=-1)
        return unit

    def emit(self, idx: Tensor, layer: int, h: Tensor, pooled: Tensor, unit: Tensor) -> None:
        """Rows ``idx`` leave at ``layer`` with states ``h [b, t, d]``."""
        if self.maps is not None and layer < self.n_layers:
            h = self.maps.apply(layer, h)
        self.token_buffer(h)[idx, : h.shape[1]] = h
        self.out[idx] = self.returned(layer, pooled, unit)
        self.exit_layer[idx] = layer

    def finish(self, rows: Tensor, hidden: Tensor, pooled: Tensor) -> ExitOutput:
        """The rows still running ``rows`` leave at the last layer with states ``hidden [b, t, d]``
        and pooled vectors ``[b, d]``. When no row left early, the last layer's states are the
        token embeddings as they are: no copy (what keeps a monitor-only pass as cheap as a
        plain forward)."""
        out = F.normalize(pooled.float(), dim=-1)
        if self.tokens is None and hidden.shape == self.shape:
            self.tokens, self.out = hidden, out
        else:
            self.token_buffer(hidden)[rows, : hidden.shape[1]] = hidden
            self.out[rows] = out
        if self.stack is not None:
            self.stack[rows, self.n_layers - 1] = out
        return self.result()

    def result(self) -> ExitOutput:
        tokens = self.tokens if self.tokens is not None else torch.zeros(self.shape, device=self.out.device)
        return ExitOutput(tokens, self.out, self.exit_layer, self.stack)


@torch.inference_mode()
def exit_forward(
    model: Any,
    input_ids: Tensor,
    attention_mask: Tensor,
    config: ExitConfig,
    maps: Any = None,
    compact: bool = True,
    right_padded: bool = True,
    keep_layers: bool = False,
) -> ExitOutput:
    """One pre-tokenised batch through the exit loop (Algorithm 1, batched).

    Args:
        model: a transformers model of a supported architecture (:data:`ARCHITECTURES`).
        input_ids, attention_mask: ``[B, T]`` on the model's device.
        config: the exit rule (``min_layer=None`` resolves from the depth).
        maps: :class:`leap.core.layer_maps.LayerMaps` applied to a row's states when it exits.
        compact: drop exited rows from the running batch (results are identical).
        right_padded: the tokenizer pads on the right (then padding columns no running
            row needs are trimmed after a compaction).
        keep_layers: also return each row's layer stack (``ExitOutput.layer_stack``) for
            common-depth scoring; costs one map per pooled layer, nothing else.
    """
    ad = adapter_for(model)
    layers = ad.layers(model)
    n_layers = len(layers)
    cfg = config.resolve(n_layers)
    bsz, seq = input_ids.shape
    rows = torch.arange(bsz, device=input_ids.device)  # original row of each running row
    done = torch.zeros(bsz, dtype=torch.bool, device=input_ids.device)
    state = ExitState(cfg, bsz, input_ids.device)
    mask2d = attention_mask
    weights = mean_pool_weights(mask2d)  # [B, 1, T]
    hidden = ad.embed(model, input_ids, mask2d)  # [B, T, d]
    mask4d = _bidirectional_mask(model, hidden, mask2d)
    extra = ad.extra(model, hidden)
    res = _ExitOutputs(bsz, seq, hidden, n_layers, maps, keep_layers)
    for l in range(1, n_layers + 1):
        hidden = ad.call(layers[l - 1], hidden, mask4d, extra)  # h^(l): [b, T, d]
        if l == n_layers or not state.needs_pool(l):
            continue
        pooled = pool_with(weights, hidden)  # p_l: [b, d]
        exits, unit = state.step(l, pooled)  # [b] bool, e_l [b, d]
        if res.stack is not None:
            live = ~done[rows]
            res.stack[rows[live], l - 1] = res.returned(l, pooled[live], unit[live])
        if exits is None:
            continue
        if not compact:
            exits = exits & ~done[rows]
        if not bool(exits.any()):
            continue
        if compact and bool(exits.all()):  # every running row exits here
            res.emit(rows, l, hidden, pooled, unit)
            return res.result()
        idx = rows[exits]
        res.emit(idx, l, hidden[exits], pooled[exits], unit[exits])
        done[idx] = True
        if compact:
            keep = (~exits).nonzero(as_tuple=True)[0]
            rows = rows.index_select(0, keep)
            hidden, mask2d = hidden.index_select(0, keep), mask2d.index_select(0, keep)
            state.keep(keep)
            if right_padded:  # trim padding columns no running row needs
                t = int(mask2d.sum(dim=1).max())
                hidden, mask2d = hidden[:, :t], mask2d[:, :t]
            weights = mean_pool_weights(mask2d)
            mask4d = _bidirectional_mask(model, hidden, mask2d)
            extra = ad.extra(model, hidden)
        elif bool(done.all()):
            return res.result()
    if not compact:  # exited rows still run: only the others leave at the last layer
        last = ~done[rows]
        rows, hidden, weights = rows[last], hidden[last], weights[last]
    return res.finish(rows, hidden, pool_with(weights, hidden))


@torch.inference_mode()
def layers_forward(model: Any, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """``[L, B, d]`` pooled (not normalised) float32 vectors of every layer, full pass."""
    ad = adapter_for(model)
    weights = mean_pool_weights(attention_mask)  # [B, 1, T]
    hidden = ad.embed(model, input_ids, attention_mask)
    mask4d = _bidirectional_mask(model, hidden, attention_mask)
    extra = ad.extra(model, hidden)
    pooled = []
    for layer in ad.layers(model):
        hidden = ad.call(layer, hidden, mask4d, extra)
        pooled.append(pool_with(weights, hidden).float())
    return torch.stack(pooled)
