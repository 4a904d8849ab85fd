"""The encode methods with exit layers, and the one batching loop behind them.

:class:`leap.serving.model.ExitSentenceTransformer` serves with torch or ONNX Runtime; either
way its encode methods run through :func:`encode_rows`: texts checked once, batches sorted by
length (as sentence-transformers does, so padding is small), each batch filling rows of the
same three outputs. What an engine adds is only how one tokenised batch runs through the layers.

Example:
    >>> from leap import ExitSentenceTransformer
    >>> model = ExitSentenceTransformer("path/to/student", backend="onnx-int8")   # or torch
    >>> emb, layers = model.encode_with_exit_layers(["A man plays a guitar."])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from leap.core.exit_config import ExitConfig
from leap.errors import LeapError


@dataclass
class BatchResult:
    """One batch through an engine: ``embeddings [B, d]``, ``exit_layers [B]`` (1-based) and,
    when asked for, ``layer_stack [B, L, d]`` (:mod:`leap.core.common_depth`)."""

    embeddings: np.ndarray
    exit_layers: np.ndarray
    layer_stack: np.ndarray | None = None


def check_texts(sentences: Iterable[str]) -> list[str]:
    """``sentences`` as a list of str, or one error naming the first item that is not text."""
    if isinstance(sentences, str):
        raise LeapError("sentences must be a list of str, not a single str; wrap it in a list")
    out = list(sentences)
    for i, s in enumerate(out):
        if not isinstance(s, str):
            raise LeapError(f"sentences[{i}] is {type(s).__name__}, expected str")
    return out


def length_batches(sents: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Index batches, longest texts first (as sentence-transformers sorts), so padding is small."""
    if batch_size < 1:
        raise LeapError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort([-len(s) for s in sents], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def encode_rows(
    sentences: Sequence[str],
    batch_size: int,
    run: Callable[[list[str]], BatchResult],
    dim: int,
    num_layers: int,
    keep_layers: bool = False,
    show_progress_bar: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The batching loop of every engine: ``(embeddings [N, d] float32, exit_layers [N],
    layer_stack [N, L, d] or None)`` in input order, each batch run by ``run(texts)``."""
    sents = check_texts(sentences)
    emb = np.zeros((len(sents), dim), dtype=np.float32)
    layers = np.zeros(len(sents), dtype=np.int64)
    stack = np.zeros((len(sents), num_layers, dim), dtype=np.float32) if keep_layers else None
    batches = length_batches(sents, batch_size) if sents else []
    if show_progress_bar:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="encode", unit="batch")
    for idx in batches:
        out = run([sents[i] for i in idx])
        emb[idx] = out.embeddings
        layers[idx] = out.exit_layers
        if stack is not None:
            stack[idx] = out.layer_stack
    return emb, layers, stack


class ExitEncoderMethods:
    """The encode methods both engines share, over one method each engine implements:
    ``encode_batches(sentences, batch_size, exit, prompt, show_progress_bar, keep_layers) ->
    (embeddings, exit_layers, layer_stack or None)`` (through :func:`encode_rows`)."""

    def encode_with_exit_layers(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        exit: ExitConfig | dict | None = None,
        prompt: str | None = None,
        show_progress_bar: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings [N, d] float32, exit_layers [N])``, batches sorted by length (as
        sentence-transformers sorts them), with the model's rule or ``exit`` for this call."""
        emb, layers, _ = self.encode_batches(sentences, batch_size, exit, prompt, show_progress_bar, False)
        return emb, layers

    def encode_with_layer_stack(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        exit: ExitConfig | dict | None = None,
        prompt: str | None = None,
        show_progress_bar: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(layer stack [N, L, d] float32, exit_layers [N])`` for common-depth scoring
        (:mod:`leap.core.common_depth`): each row's normalised (mapped) vector at every layer it
        reached from the first one the rule reads, zeros elsewhere; the row's embedding is
        ``stack[i, exit_layers[i] - 1]``. Same exits and cost as ``encode``.

        A corpus to be met at any depth (documents encoded offline at full depth) keeps every
        layer with ``exit=ExitConfig(..., monitor_only=True)``: the rule reads every layer
        from ``l_min - k``, nobody exits.
        """
        _, layers, stack = self.encode_batches(sentences, batch_size, exit, prompt, show_progress_bar, True)
        return stack, layers
