"""An exit model as BEIR's dense retriever expects one (``encode_queries`` / ``encode_corpus``),
keeping the exit layers of every chunk it encodes."""

from __future__ import annotations

from typing import Any

import numpy as np

from leap.core.exit_config import ExitConfig
from leap.serving.model import ExitSentenceTransformer


class ExitRetrievalModel:
    """BEIR's model interface (``encode_queries`` / ``encode_corpus``) over an exit model.

    One object per evaluation: it keeps the exit layers of every call (BEIR encodes the
    corpus in chunks of ``corpus_chunk_size`` documents) in ``query_exit_layers`` and
    ``corpus_exit_layers``, and never changes the model.
    """

    def __init__(self, model: ExitSentenceTransformer, exit: ExitConfig | dict | None = None) -> None:
        self.model = model
        self.exit = model.exit_module.resolve(exit)
        self.query_exit_layers: list[np.ndarray] = []
        self.corpus_exit_layers: list[np.ndarray] = []

    def encode_queries(self, queries: list[str], batch_size: int = 32, **kwargs: Any) -> np.ndarray:
        emb, layers = self.model.encode_with_exit_layers(queries, batch_size=batch_size, exit=self.exit)
        self.query_exit_layers.append(layers)
        return emb

    def encode_corpus(
        self, corpus: list[dict[str, str]] | dict[str, list], batch_size: int = 32, **kwargs: Any
    ) -> np.ndarray:
        """``title + " " + text`` per document, as BEIR's SentenceBERT does."""
        if isinstance(corpus, dict):
            titles, texts = corpus.get("title", [""] * len(corpus["text"])), corpus["text"]
            docs = [(t + " " + x).strip() for t, x in zip(titles, texts)]
        else:
            docs = [(d.get("title", "") + " " + d.get("text", "")).strip() for d in corpus]
        emb, layers = self.model.encode_with_exit_layers(docs, batch_size=batch_size, exit=self.exit)
        self.corpus_exit_layers.append(layers)
        return emb

    def exit_layers(self, which: str) -> np.ndarray:
        parts = self.query_exit_layers if which == "query" else self.corpus_exit_layers
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
