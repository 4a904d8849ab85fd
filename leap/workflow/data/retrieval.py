"""A BEIR-style retrieval set: BEIR's file layout read through beir's own loader, a dev
split for tuning (the set's own dev qrels, else a seeded sample of its training queries)."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from leap.errors import LeapError
from leap.files import atomic_path, write_json, write_text


@dataclass
class RetrievalSet:
    """A BEIR-style retrieval set: ``corpus {id: {title, text}}``, ``queries {id: text}``,
    ``qrels {query_id: {doc_id: relevance}}`` (the test split).

    ``dev_queries`` / ``dev_qrels`` hold a dev split for tuning, carved from the set's
    training queries (:func:`carve_dev`); empty when the set has none. Tuning reads dev,
    never test.
    """

    name: str
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    synthetic: bool = False
    dev_queries: dict[str, str] = field(default_factory=dict)
    dev_qrels: dict[str, dict[str, int]] = field(default_factory=dict)

    def split(self, name: str) -> RetrievalSet:
        """The set with the queries and qrels of split ``test`` or ``dev`` (same corpus)."""
        if name == "test":
            return self
        if name != "dev":
            raise LeapError(f"unknown retrieval split {name!r}; use test or dev")
        if not self.dev_qrels:
            raise LeapError(f"retrieval set {self.name!r} has no dev split (its source has no training queries)")
        return RetrievalSet(self.name, self.corpus, self.dev_queries, self.dev_qrels, self.synthetic)

    def pass_texts(self) -> list[str]:
        """The texts of one evaluation pass, in order: test queries, dev queries, then the
        documents as ``title + " " + text`` (as BEIR's SentenceBERT)."""
        docs = [(d.get("title", "") + " " + d["text"]).strip() for d in self.corpus.values()]
        return [*self.queries.values(), *self.dev_queries.values(), *docs]

    def save(self, folder: str | os.PathLike) -> None:
        """Write BEIR's layout (corpus.jsonl, queries.jsonl, qrels/test.tsv and, with a dev
        split, qrels/dev.tsv), atomically per file."""
        folder = Path(folder)
        with atomic_path(folder / "corpus.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for did, doc in self.corpus.items():
                fh.write(json.dumps({"_id": did, "title": doc.get("title", ""), "text": doc["text"]}) + "\n")
        with atomic_path(folder / "queries.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for qid, text in {**self.queries, **self.dev_queries}.items():
                fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
        for split, qrels in (("test", self.qrels), ("dev", self.dev_qrels)):
            if not qrels:
                continue
            lines = [f"{qid}\t{did}\t{rel}\n" for qid, docs in qrels.items() for did, rel in docs.items()]
            write_text(folder / "qrels" / f"{split}.tsv", "query-id\tcorpus-id\tscore\n" + "".join(lines))
        write_json(
            folder / "info.json",
            {"name": self.name, "synthetic": self.synthetic, "docs": len(self.corpus), "queries": len(self.queries)},
        )

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        name: str | None = None,
        dev_from: str = "dev",
        dev_queries: int = 300,
        seed: int = 0,
    ) -> RetrievalSet:
        """Read BEIR's layout through beir's own GenericDataLoader: the test split, and a dev
        split from ``qrels/{dev_from}.tsv`` when it exists (``dev_from="train"``: a seeded
        sample of ``dev_queries`` training queries, :func:`carve_dev`)."""
        folder = Path(folder)
        if not (folder / "corpus.jsonl").exists():
            raise LeapError(f"no BEIR data set at {folder} (corpus.jsonl missing)")
        from beir.datasets.data_loader import GenericDataLoader

        corpus, queries, qrels = GenericDataLoader(data_folder=str(folder)).load(split="test")
        info = folder / "info.json"
        synthetic = json.loads(info.read_text())["synthetic"] if info.exists() else False
        out = cls(name or folder.name, corpus, queries, qrels, synthetic)
        if (folder / "qrels" / f"{dev_from}.tsv").exists():
            loader = GenericDataLoader(data_folder=str(folder))
            loader.corpus = corpus  # the loader reads the corpus only when it has none
            _, dev_q, dev_qrels = loader.load(split=dev_from)
            dev_qrels = {q: docs for q, docs in dev_qrels.items() if q not in qrels}
            if dev_from != "dev":
                dev_qrels = carve_dev(dev_qrels, dev_queries, seed)
            out.dev_qrels = dev_qrels
            out.dev_queries = {q: dev_q[q] for q in dev_qrels if q in dev_q}
        return out


def carve_dev(train_qrels: Mapping[str, Mapping[str, int]], n: int, seed: int = 0) -> dict[str, dict[str, int]]:
    """A seeded sample of ``n`` training queries (their qrels) as a dev split for tuning."""
    ids = sorted(train_qrels)
    keep = sorted(random.Random(seed).sample(ids, min(n, len(ids))))
    return {q: dict(train_qrels[q]) for q in keep}


def dev_split_of(folder: str | os.PathLike) -> str:
    """Where a BEIR set's dev split comes from: its own ``qrels/dev.tsv`` (NFCorpus has one),
    else a sample of its training queries (SciFact)."""
    return "dev" if (Path(folder) / "qrels" / "dev.tsv").exists() else "train"
