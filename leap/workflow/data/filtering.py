"""Filtering of paper sec 4.1 / B.2: unique training sentences longer than 20 characters,
every evaluation sentence removed (no leakage), an optional seeded cap; the sentence files
the later stages read."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leap.core.hashing import sentences_checksum
from leap.files import atomic_path, write_json
from leap.workflow.data.retrieval import RetrievalSet

_WS = re.compile(r"\s+")


def normalise(sentence: str) -> str:
    """Whitespace normalisation: strip, and collapse every run of whitespace to one space."""
    return _WS.sub(" ", sentence).strip()


@dataclass
class FilterResult:
    sentences: list[str]
    sources: list[str]
    stats: dict


def filter_sentences(
    sources: dict[str, Iterable[str]],
    exclude: Iterable[str] = (),
    min_chars: int = 20,
    max_sentences: int | None = None,
    seed: int = 0,
) -> FilterResult:
    """Unique sentences longer than ``min_chars`` characters after whitespace normalisation.

    Sources are read in the given order; a sentence is kept once, attributed to the first
    source that has it. Every sentence that occurs (after normalisation) in ``exclude``
    (the configured evaluation sets) is dropped. With ``max_sentences`` a seeded sample is
    kept, in the original order. Stats count, per source: read, short, duplicate, leaked, kept.
    """
    banned = {normalise(s) for s in exclude}
    seen: set[str] = set()
    kept: list[str] = []
    kept_src: list[str] = []
    per: dict[str, dict[str, int]] = {}
    for name, items in sources.items():
        c = per.setdefault(name, {"read": 0, "short": 0, "duplicate": 0, "leaked": 0, "kept": 0})
        for raw in items:
            c["read"] += 1
            s = normalise(raw if isinstance(raw, str) else "")
            if len(s) <= min_chars:
                c["short"] += 1
            elif s in seen:
                c["duplicate"] += 1
            elif s in banned:
                c["leaked"] += 1
                seen.add(s)
            else:
                seen.add(s)
                kept.append(s)
                kept_src.append(name)
                c["kept"] += 1
    total = len(kept)
    if max_sentences is not None and total > max_sentences:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(total, size=max_sentences, replace=False))
        kept = [kept[i] for i in idx]
        kept_src = [kept_src[i] for i in idx]
    stats = {
        "min_chars": min_chars,
        "sources": per,
        "read": sum(c["read"] for c in per.values()),
        "short_dropped": sum(c["short"] for c in per.values()),
        "duplicates_dropped": sum(c["duplicate"] for c in per.values()),
        "leaked_dropped": sum(c["leaked"] for c in per.values()),
        "unique_kept": total,
        "cap": max_sentences,
        "seed": seed,
        "written": len(kept),
    }
    return FilterResult(kept, kept_src, stats)


def write_sentences(result: FilterResult, parquet_path: str | os.PathLike, stats_path: str | os.PathLike) -> None:
    """Parquet (columns ``sentence, source``) and the stats JSON, each written atomically."""
    df = pd.DataFrame({"sentence": result.sentences, "source": result.sources})
    with atomic_path(parquet_path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)
    stats = dict(result.stats, sha256=sentences_checksum(result.sentences))
    write_json(stats_path, stats)


def read_sentences(parquet_path: str | os.PathLike) -> list[str]:
    return pd.read_parquet(parquet_path, columns=["sentence"])["sentence"].tolist()


def eval_sentences(
    stsb: pd.DataFrame | None = None,
    splits: Sequence[str] = ("dev", "test"),
    pairs: Sequence[pd.DataFrame] = (),
    retrieval: Sequence[RetrievalSet] = (),
) -> list[str]:
    """Every sentence of the configured evaluation sets (what filtering must remove)."""
    out: list[str] = []
    if stsb is not None:
        sub = stsb[stsb["split"].isin(list(splits))]
        out += sub["sentence1"].tolist() + sub["sentence2"].tolist()
    for df in pairs:
        out += df["sentence1"].tolist() + df["sentence2"].tolist()
    for r in retrieval:
        out += list(r.queries.values()) + list(r.dev_queries.values()) + [d["text"] for d in r.corpus.values()]
    return out
