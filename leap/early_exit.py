"""Convergence-based early-exit inference for embedding models (paper Algorithm 1, Eq. 6).

For each layer ``l = 1..L`` the encoder computes ``h^(l)`` and its mean-pooled vector
``p_l``; a sample exits at ``l`` when ``l >= l_min``, ``l > k`` and
``cos(p_l, p_{l-k}) >= theta`` and returns ``e^(l) = p_l / ||p_l||``. A sample that never
exits returns ``e^(L)``. Batched inference gives every sample the exit layer and
embedding it gets alone: each row carries its own exit state, and with ``compact=True``
exited rows leave the running batch (and padding no remaining row needs is trimmed).

Strategies (SPEC "Early-exit inference", "Comparison exits"):

* ``convergence``: Eq. 6 above (``theta``, ``patience`` = k, ``min_layer``).
* ``pabee``: a counter of consecutive layers with ``cos(p_l, p_{l-1}) >= pabee_theta``;
  exit when it reaches ``pabee_patience`` and ``l >= min_layer`` (Table 10).
* ``none``: full depth; equals ``SentenceTransformer.encode(normalize_embeddings=True)``.

The per-architecture code (how to embed, which modules are the layers, what extra
input a layer takes) lives in one table, :data:`ARCHITECTURES`: BERT (and MiniLM,
TinyBERT, which are BERT models), MPNet and DistilBERT.

Example:
    >>> enc = EarlyExitEncoder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2",
    ...                                        exit=ExitConfig(theta=0.95, min_layer=3))
    >>> emb, layers = enc.encode(["a sentence", "another one"], return_exit_layers=True)
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from leap.errors import LeapError
from leap.pooling import mean_pool_weights, pool_with

STRATEGIES = ("convergence", "pabee", "none")


@dataclass(frozen=True)
class ExitConfig:
    """Exit rule (SPEC "Public interface"). Defaults are the paper's (sec 3.3).

    Attributes:
        strategy: ``"convergence"`` (Eq. 6), ``"pabee"`` (Table 10) or ``"none"``.
        theta: convergence threshold on ``cos(p_l, p_{l-k})``, in ``[-1, 1]``.
        patience: ``k``, the layer gap the convergence check compares over (>= 1).
        min_layer: ``l_min``, the first layer a sample may exit at (1-based).
        pabee_theta: PABEE's agreement threshold on ``cos(p_l, p_{l-1})``.
        pabee_patience: consecutive agreeing layers PABEE needs to exit.
        monitor_only: run every check but never exit (the "monitor-only" path used to
            measure monitoring overhead; embeddings are those of a full pass).
    """

    strategy: str = "convergence"
    theta: float = 0.95
    patience: int = 1
    min_layer: int = 6
    pabee_theta: float = 0.99
    pabee_patience: int = 3
    monitor_only: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise LeapError(f"unknown exit strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not -1.0 <= float(self.theta) <= 1.0:
            raise LeapError(f"theta must lie in [-1, 1] (a cosine threshold), got {self.theta}")
        if not -1.0 <= float(self.pabee_theta) <= 1.0:
            raise LeapError(f"pabee_theta must lie in [-1, 1] (a cosine threshold), got {self.pabee_theta}")
        if int(self.patience) < 1:
            raise LeapError(f"patience (k) must be >= 1, got {self.patience}")
        if int(self.pabee_patience) < 1:
            raise LeapError(f"pabee_patience must be >= 1, got {self.pabee_patience}")
        if int(self.min_layer) < 1:
            raise LeapError(f"min_layer must be >= 1 (layer 0 is the embedding output), got {self.min_layer}")

    def check_layers(self, num_layers: int) -> None:
        """Raise :class:`LeapError` if ``min_layer`` is outside ``1..num_layers`` (ignored for ``none``)."""
        if self.strategy != "none" and not 1 <= self.min_layer <= num_layers:
            raise LeapError(
                f"min_layer must lie in 1..{num_layers} for this {num_layers}-layer model, got {self.min_layer}"
            )

    def first_pooled_layer(self) -> int:
        """The first layer whose pooled vector the rule ever reads (earlier ones are skipped)."""
        if self.strategy == "convergence":
            return max(1, self.min_layer - self.patience)
        if self.strategy == "pabee":
            return 1
        return 10**9


class ExitState:
    """Per-row exit bookkeeping for one running batch: the rule of :class:`ExitConfig`.

    ``step(l, p_l)`` takes the pooled vectors ``[B, d]`` of layer ``l`` for the rows still
    running and returns a bool ``[B]`` of rows that exit at ``l``. ``keep(idx)`` drops the
    other rows (compaction). The same object drives the fast encoder and the reference
    :func:`simulate_exit`, so the two cannot disagree on the rule.
    """

    def __init__(self, config: ExitConfig, batch_size: int, device: torch.device) -> None:
        self.cfg = config
        self.history: deque[Tensor] = deque(maxlen=max(config.patience, 1))  # e_{l-k..l-1}, [B, d] each
        self.counter = torch.zeros(batch_size, dtype=torch.long, device=device)  # PABEE

    def needs_pool(self, layer: int) -> bool:
        return self.cfg.strategy != "none" and layer >= self.cfg.first_pooled_layer()

    def step(self, layer: int, pooled: Tensor) -> tuple[Tensor | None, Tensor]:
        """Exit decisions at ``layer`` (1-based) for pooled vectors ``[B, d]``.

        Returns ``(exits, e_l)``: a bool ``[B]`` of rows that exit here (``None`` when
        no row can exit at this layer) and the L2-normalised pooled vectors ``[B, d]``
        (float32), which are also the exit embeddings.
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
        self.history.append(unit)
        if cfg.monitor_only:
            exits = None
        return exits, unit

    def keep(self, idx: Tensor) -> None:
        """Keep only rows ``idx`` (a LongTensor of row indices)."""
        self.history = deque((h.index_select(0, idx) for h in self.history), maxlen=self.history.maxlen)
        self.counter = self.counter.index_select(0, idx)


def simulate_exit(layer_vectors: Tensor | np.ndarray, config: ExitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Reference exit decisions from the pooled vectors of a full pass.

    Args:
        layer_vectors: ``[L, N, d]`` pooled vectors of layers ``1..L``
            (:meth:`EarlyExitEncoder.layer_embeddings`).
        config: the exit rule.

    Returns:
        ``(embeddings [N, d] L2-normalised, exit_layers [N] 1-based)``. Used by the
        evaluation to sweep ``theta`` without re-encoding; the encoder's fast path must
        agree with it (tests check this).
    """
    v = torch.as_tensor(np.asarray(layer_vectors) if not isinstance(layer_vectors, Tensor) else layer_vectors)
    v = v.float()
    n_layers, n = v.shape[0], v.shape[1]
    config.check_layers(n_layers)
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
    emb = F.normalize(v[exit_layer - 1, rows], dim=-1)
    return emb.numpy(), exit_layer.numpy()


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
    """

    embed: Callable[[Any, Tensor, Tensor], Tensor]
    layers: Callable[[Any], Sequence[torch.nn.Module]]
    extra: Callable[[Any, Tensor], Any]
    call: Callable[[torch.nn.Module, Tensor, Any, Any], Tensor]


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


ARCHITECTURES: dict[str, ArchAdapter] = {
    # BERT, MiniLM (BertModel weights) and TinyBERT are all model_type "bert".
    "bert": ArchAdapter(
        embed=lambda m, ids, mask: m.embeddings(input_ids=ids),
        layers=lambda m: m.encoder.layer,
        extra=lambda m, h: None,
        call=lambda layer, h, mask, extra: _first(layer(h, mask)),
    ),
    "mpnet": ArchAdapter(
        embed=lambda m, ids, mask: m.embeddings(input_ids=ids),
        layers=lambda m: m.encoder.layer,
        extra=lambda m, h: m.encoder.compute_position_bias(h),
        call=lambda layer, h, mask, extra: _first(layer(h, mask, extra)),
    ),
    "distilbert": ArchAdapter(
        embed=lambda m, ids, mask: m.embeddings(ids),
        layers=lambda m: m.transformer.layer,
        extra=lambda m, h: None,
        call=lambda layer, h, mask, extra: _first(layer(h, mask)),
    ),
}


def _bidirectional_mask(model: Any, hidden: Tensor, attention_mask: Tensor) -> Any:
    """The attention mask the model's own forward would build (sdpa / eager alike)."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=attention_mask)


# ----------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _load_sentence_transformer(path_or_id: str, device: str):
    from sentence_transformers import SentenceTransformer

    p = Path(os.path.expanduser(path_or_id))
    if p.exists():
        if not p.is_dir():
            raise LeapError(f"model path {path_or_id!r} is a file; pass the model's folder")
        if not (p / "config.json").exists() and not (p / "modules.json").exists():
            raise LeapError(
                f"{path_or_id!r} is not a model folder (no modules.json or config.json); pass a "
                "SentenceTransformer or transformers folder, or a Hugging Face Hub id"
            )
    elif not _HUB_ID.match(path_or_id) or path_or_id.startswith((".", "/", "~")):
        raise LeapError(f"model folder {path_or_id!r} does not exist; pass an existing folder or a hub id")
    try:
        return SentenceTransformer(str(p) if p.exists() else path_or_id, device=device)
    except (OSError, ValueError, RuntimeError) as err:  # hub unreachable, unknown repo, bad files
        where = "the local folder" if p.exists() else "the Hugging Face Hub"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = (
            " No local folder of that name exists either; pass a local model folder, or allow network "
            "access (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" and not p.exists() else ""
        )
        raise LeapError(f"could not load model {path_or_id!r} from {where}: {first}.{hint}") from None


def _pooling_mode(module: Any) -> str:
    cfg = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
    if "pooling_mode" in cfg:
        return str(cfg["pooling_mode"])
    modes = [k.removeprefix("pooling_mode_").removesuffix("_tokens") for k, v in cfg.items() if k.startswith("pooling_mode_") and v]
    return "+".join(modes) if modes else "unknown"


def _unwrap(st: Any, name: str) -> tuple[Any, Any, int]:
    """(hf_model, tokenizer, max_seq_length) of a SentenceTransformer, checking its modules."""
    modules = list(st)
    kinds = [type(m).__name__ for m in modules]
    if not modules or kinds[0] != "Transformer":
        raise LeapError(f"{name}: expected a Transformer as the first module, found {kinds}")
    if len(modules) < 2 or kinds[1] != "Pooling":
        raise LeapError(f"{name}: expected a Pooling module after the Transformer, found {kinds}")
    mode = _pooling_mode(modules[1])
    if mode != "mean":
        raise LeapError(
            f"{name}: pooling mode {mode!r} is not supported; early exit pools every layer with "
            "attention-mask-aware mean pooling (SPEC p_l), so only pooling_mode 'mean' models can be served"
        )
    rest = [k for k in kinds[2:] if k != "Normalize"]
    if rest:
        raise LeapError(
            f"{name}: modules after pooling ({rest}) are not supported; the exit embedding is the "
            "normalised mean-pooled layer output"
        )
    transformer = modules[0]
    hf = getattr(transformer, "auto_model", None) or getattr(transformer, "model")
    return hf, st.tokenizer, int(st.max_seq_length or 512)


# ----------------------------------------------------------------------------------------
# The encoder
# ----------------------------------------------------------------------------------------


class EarlyExitEncoder:
    """Serve a mean-pooling embedding model with per-sample early exit.

    Build it with :meth:`from_pretrained`. ``encode`` is a drop-in for
    ``SentenceTransformer.encode`` (L2-normalised ``np.ndarray``), so it works as an MTEB
    encoder and, through ``encode_queries`` / ``encode_corpus``, as the model of BEIR's
    ``DenseRetrievalExactSearch``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        max_seq_length: int,
        exit: ExitConfig | None = None,
        compact: bool = True,
        device: str | torch.device | None = None,
        name: str = "model",
    ) -> None:
        model_type = getattr(model.config, "model_type", None)
        if model_type not in ARCHITECTURES:
            raise LeapError(
                f"{name}: architecture {model_type!r} is not supported; supported: {', '.join(ARCHITECTURES)}"
            )
        self.model = model.eval()
        self.adapter = ARCHITECTURES[model_type]
        self.tokenizer = tokenizer
        self.max_seq_length = int(max_seq_length)
        self.exit = exit or ExitConfig()
        self.num_layers = len(self.adapter.layers(model))
        self.exit.check_layers(self.num_layers)
        self.compact = compact
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.name = name
        self.last_exit_layers: np.ndarray | None = None

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        exit: ExitConfig | None = None,
        device: str | None = None,
        compact: bool = True,
        dtype: str | torch.dtype | None = None,
    ) -> "EarlyExitEncoder":
        """Load a SentenceTransformer folder, a plain transformers folder, or a hub id.

        A SentenceTransformer model must be Transformer -> mean Pooling (-> Normalize):
        its tokenizer and ``max_seq_length`` are used. A plain transformers model gets
        mean pooling (sentence-transformers' own default for such folders).

        Args:
            exit: the exit rule (default :class:`ExitConfig`).
            device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
            compact: drop exited rows from the running batch (results are identical).
            dtype: ``"float16"`` / ``"bfloat16"`` on GPU (default float32).
        """
        name = str(path_or_id)
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        st = _load_sentence_transformer(name, dev)
        model, tokenizer, max_len = _unwrap(st, name)
        if dtype is not None:
            torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
            if torch_dtype in (torch.float16, torch.bfloat16) and torch.device(dev).type == "cpu":
                raise LeapError(f"dtype {dtype} is for GPU inference; use float32 on CPU")
            model = model.to(torch_dtype)
        return cls(model.to(dev), tokenizer, max_len, exit=exit, compact=compact, device=dev, name=name)

    # -- tokenisation ---------------------------------------------------------------------
    @staticmethod
    def _check_sentences(sentences: Iterable[str]) -> list[str]:
        if isinstance(sentences, str):
            raise TypeError("sentences must be a list of str, not a single str; wrap it in a list")
        out = list(sentences)
        for i, s in enumerate(out):
            if not isinstance(s, str):
                raise TypeError(f"sentences[{i}] is {type(s).__name__}, expected str")
        return out

    def tokenize(self, sentences: Sequence[str]) -> dict[str, Tensor]:
        """Pad and truncate like ``SentenceTransformer.encode`` (``max_seq_length``)."""
        return self.tokenizer(
            list(sentences),
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        )

    def _batches(self, sentences: list[str], batch_size: int) -> list[np.ndarray]:
        """Index batches sorted by token length (longest first), like sentence-transformers."""
        lengths = [len(ids) for ids in self.tokenizer(sentences, truncation=True, max_length=self.max_seq_length)["input_ids"]]
        order = np.argsort(-np.asarray(lengths), kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    # -- the layer loop -------------------------------------------------------------------
    @torch.inference_mode()
    def forward_exit(
        self, input_ids: Tensor, attention_mask: Tensor, exit: ExitConfig | None = None, compact: bool | None = None
    ) -> tuple[Tensor, Tensor]:
        """One pre-tokenised batch through the exit loop (Algorithm 1, batched).

        Args:
            input_ids, attention_mask: ``[B, T]`` on ``self.device``.

        Returns:
            ``(embeddings [B, d] float32 L2-normalised, exit_layers [B] long, 1-based)``.
        """
        cfg = exit or self.exit
        compact = self.compact if compact is None else compact
        m, ad = self.model, self.adapter
        layers = ad.layers(m)
        n_layers = len(layers)
        cfg.check_layers(n_layers)
        bsz = input_ids.shape[0]
        exit_layer = torch.full((bsz,), n_layers, dtype=torch.long, device=input_ids.device)
        rows = torch.arange(bsz, device=input_ids.device)  # original row of each running row
        done = torch.zeros(bsz, dtype=torch.bool, device=input_ids.device)
        state = ExitState(cfg, bsz, input_ids.device)
        right_padded = getattr(self.tokenizer, "padding_side", "right") == "right"

        mask2d = attention_mask
        weights = mean_pool_weights(mask2d)  # [B, 1, T]
        hidden = ad.embed(m, input_ids, mask2d)  # [B, T, d]
        mask4d = _bidirectional_mask(m, hidden, mask2d)
        extra = ad.extra(m, hidden)
        out = torch.zeros(bsz, hidden.shape[-1], dtype=torch.float32, device=hidden.device)
        for l in range(1, n_layers + 1):
            hidden = ad.call(layers[l - 1], hidden, mask4d, extra)  # h^(l): [b, T, d]
            if l == n_layers or not state.needs_pool(l):
                continue
            exits, unit = state.step(l, pool_with(weights, hidden))  # [b] bool, e_l [b, d]
            if exits is None:
                continue
            if not compact:
                exits = exits & ~done[rows]
            if not bool(exits.any()):
                continue
            if compact and bool(exits.all()):  # every running row exits here
                out[rows] = unit
                exit_layer[rows] = l
                return out, exit_layer
            idx = rows[exits]
            out[idx] = unit[exits]
            exit_layer[idx] = l
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
                mask4d = _bidirectional_mask(m, hidden, mask2d)
                extra = ad.extra(m, hidden)
            elif bool(done.all()):
                return out, exit_layer
        last = ~done[rows]
        out[rows[last]] = F.normalize(pool_with(weights[last], hidden[last]).float(), dim=-1)
        return out, exit_layer

    @torch.inference_mode()
    def forward_layers(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``[L, B, d]`` pooled (not normalised) vectors of every layer, full pass."""
        m, ad = self.model, self.adapter
        weights = mean_pool_weights(attention_mask)  # [B, 1, T]
        hidden = ad.embed(m, input_ids, attention_mask)
        mask4d = _bidirectional_mask(m, hidden, attention_mask)
        extra = ad.extra(m, hidden)
        pooled = []
        for layer in ad.layers(m):
            hidden = ad.call(layer, hidden, mask4d, extra)
            pooled.append(pool_with(weights, hidden).float())
        return torch.stack(pooled)

    # -- public encoding API --------------------------------------------------------------
    def encode(
        self,
        sentences: Iterable[str],
        batch_size: int = 32,
        return_exit_layers: bool = False,
        show_progress_bar: bool = False,
        exit: ExitConfig | None = None,
        **kwargs: Any,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """L2-normalised embeddings ``[N, d]`` (and ``[N]`` 1-based exit layers).

        ``exit`` overrides the encoder's rule for this call.

        Extra keyword arguments that sentence-transformers, MTEB or BEIR pass
        (``convert_to_tensor``, ``normalize_embeddings``, ``task_name``, ``prompt_type``, ...)
        are accepted; embeddings are always L2-normalised NumPy arrays.
        """
        sents = self._check_sentences(sentences)
        d = self.embedding_dim
        if not sents:
            empty = np.zeros((0, d), dtype=np.float32), np.zeros(0, dtype=np.int64)
            self.last_exit_layers = empty[1]
            return empty if return_exit_layers else empty[0]
        if batch_size < 1:
            raise LeapError(f"batch_size must be >= 1, got {batch_size}")
        emb = np.zeros((len(sents), d), dtype=np.float32)
        layers = np.zeros(len(sents), dtype=np.int64)
        batches = self._batches(sents, batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="encode", unit="batch")
        for idx in batches:
            feats = self.tokenize([sents[i] for i in idx])
            e, ex = self.forward_exit(
                feats["input_ids"].to(self.device), feats["attention_mask"].to(self.device), exit=exit
            )
            emb[idx] = e.cpu().numpy()
            layers[idx] = ex.cpu().numpy()
        self.last_exit_layers = layers
        return (emb, layers) if return_exit_layers else emb

    def layer_embeddings(self, sentences: Iterable[str], batch_size: int = 32) -> Tensor:
        """``[L, N, d]`` pooled vectors of every layer on a full pass (for the analyses)."""
        sents = self._check_sentences(sentences)
        out = torch.zeros(self.num_layers, len(sents), self.embedding_dim)
        for idx in self._batches(sents, batch_size) if sents else []:
            feats = self.tokenize([sents[i] for i in idx])
            v = self.forward_layers(feats["input_ids"].to(self.device), feats["attention_mask"].to(self.device))
            out[:, torch.as_tensor(idx)] = v.cpu()
        return out

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.dim)

    # -- BEIR (DenseRetrievalExactSearch) -------------------------------------------------
    def encode_queries(self, queries: list[str], batch_size: int = 32, **kwargs: Any) -> np.ndarray:
        """BEIR model interface: query embeddings (exit layers in ``last_query_exit_layers``)."""
        emb = self.encode(queries, batch_size=batch_size)
        self.last_query_exit_layers = self.last_exit_layers
        return emb

    def encode_corpus(self, corpus: list[dict[str, str]] | dict[str, list], batch_size: int = 32, **kwargs: Any) -> np.ndarray:
        """BEIR model interface: ``title + " " + text`` per document, as BEIR's SentenceBERT does."""
        if isinstance(corpus, dict):
            titles, texts = corpus.get("title", [""] * len(corpus["text"])), corpus["text"]
            docs = [(t + " " + x).strip() for t, x in zip(titles, texts)]
        else:
            docs = [(d.get("title", "") + " " + d.get("text", "")).strip() for d in corpus]
        emb = self.encode(docs, batch_size=batch_size)
        self.last_corpus_exit_layers = self.last_exit_layers
        return emb
