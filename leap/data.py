"""Training sentences, evaluation sets and the filtering of paper sec 4.1 / B.2.

One code path serves three settings. Every source is named ``kind:name``:

- ``hub:*``   the full reproduction: Hugging Face Hub datasets, each loaded at one commit
  (pinned in the config's ``data.revisions`` by repo id, or resolved from the Hub before any
  download and recorded in ``stats.json`` so that the run can be pinned) and BEIR downloads
  (the beir package's loader);
- ``local:*`` a local data folder with the layout of the project's shared data
  (``stsbenchmark/``, ``nli/``, ``mrpc/``, ``beir/<name>/``), for machines without internet;
- ``demo:*``  built-in synthetic data written for this project (templates and word lists),
  so that ``make demo`` runs offline anywhere. It is labelled *synthetic* wherever it appears.

In-memory types are the same whatever the source: training sentences are ``list[str]``;
scored pairs are a DataFrame ``sentence1, sentence2, score`` (plus ``split``); NLI pairs
a DataFrame ``sentence1, sentence2, label`` (0 entailment, 1 neutral, 2 contradiction);
a retrieval set is :class:`RetrievalSet` (beir's corpus / queries / qrels dicts).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leap.config import DataConfig
from leap.errors import LeapError
from leap.files import atomic_path, write_json, write_text

NLI_LABELS = {"entailment": 0, "neutral": 1, "contradiction": 2}

# Hub copies used by the full configuration (hub id, config, columns, splits). Their commits
# are pinned in config/config.yaml (``data.revisions``, keyed by hub id); an unpinned one is
# resolved once per run (:func:`resolve_revisions`) and recorded in stats.json.
HUB_TRAIN = {
    "snli": ("stanfordnlp/snli", None, ("premise", "hypothesis"), ("train", "validation")),
    "multi_nli": ("nyu-mll/multi_nli", None, ("premise", "hypothesis"), ("train",)),
    "qqp": ("nyu-mll/glue", "qqp", ("question1", "question2"), ("train",)),
    "mrpc": ("nyu-mll/glue", "mrpc", ("sentence1", "sentence2"), ("train",)),
    "xnli": ("facebook/xnli", "en", ("premise", "hypothesis"), ("train",)),
}
HUB_STSB = "sentence-transformers/stsb"  # columns sentence1, sentence2, score in [0, 1]
HUB_QQP_EVAL = ("nyu-mll/glue", "qqp", "validation")  # 10K pairs sampled with the data seed
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
BEIR_NAMES = ("arguana", "nfcorpus", "scifact", "scidocs", "fiqa")
DEMO_NAMES = ("sentences", "pairs", "qqp", "retrieval")  # built-in SYNTHETIC data

log = logging.getLogger(__name__)


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


# -- normalisation and filtering (sec 4.1, B.2) -------------------------------------------
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


def sentences_checksum(sentences: Sequence[str]) -> str:
    """SHA-256 of the sentences joined by newlines (the teacher cache's key)."""
    h = hashlib.sha256()
    for s in sentences:
        h.update(s.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


# -- source resolution ---------------------------------------------------------------------
def _split_ref(ref: str) -> tuple[str, str]:
    if ":" not in ref:
        raise LeapError(f"data source {ref!r} must be named kind:name with kind hub, local or demo (e.g. local:nli)")
    kind, name = ref.split(":", 1)
    if kind not in ("hub", "local", "demo"):
        raise LeapError(f"data source {ref!r}: unknown kind {kind!r}; use hub:, local: or demo:")
    return kind, name


def _need_dir(data_dir: str | os.PathLike | None, ref: str, sub: str) -> Path:
    if data_dir is None:
        raise LeapError(
            f"data source {ref!r} reads a local data folder, but data_dir is not set; "
            f"set data_dir (e.g. --config data_dir=../shared/data)"
        )
    path = Path(data_dir) / sub
    if not path.exists():
        raise LeapError(
            f"data source {ref!r}: {path} does not exist; point data_dir at a folder with "
            f"the shared-data layout (stsbenchmark/, nli/, mrpc/, beir/)"
        )
    return path


def hub_repos(refs: Iterable[str]) -> list[str]:
    """The Hugging Face Hub dataset repos that ``refs`` read (BEIR downloads are not Hub repos)."""
    out: list[str] = []
    for ref in refs:
        kind, name = _split_ref(ref)
        if kind != "hub":
            continue
        if name in HUB_TRAIN:
            out.append(HUB_TRAIN[name][0])
        if name == "stsb":
            out.append(HUB_STSB)
        if name == "qqp":
            out.append(HUB_QQP_EVAL[0])
    return list(dict.fromkeys(out))


def resolve_revisions(repos: Iterable[str], pinned: Mapping[str, str] | None = None) -> dict[str, str]:
    """The commit each repo is loaded at: the pinned one, else the Hub's current head (asked
    once, before any download, so that every split of a run comes from one commit). Without
    network an unpinned repo fails here with one message naming it and what to do."""
    out: dict[str, str] = {}
    for repo in repos:
        if (pinned or {}).get(repo):
            out[repo] = pinned[repo]
            continue
        try:
            from huggingface_hub import HfApi

            out[repo] = HfApi().dataset_info(repo).sha
        except Exception as exc:
            raise LeapError(
                f"hub dataset {repo!r}: could not reach the Hugging Face Hub to resolve its revision "
                f"({type(exc).__name__}); without internet use local: sources and point data_dir at a "
                f"local copy (config/cpu.yaml), or pin data.revisions and use a warm datasets cache"
            ) from None
    return out


def _hub_load(ref: str, repo: str, *args, revisions: Mapping[str, str] | None = None, **kwargs):
    try:
        from datasets import load_dataset

        return load_dataset(repo, *args, revision=(revisions or {}).get(repo), **kwargs)
    except Exception as exc:  # offline, missing revision, ... -> one line naming the source
        raise LeapError(
            f"data source {ref!r}: could not load {repo} from the Hugging Face Hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); without internet use local: sources and "
            f"point data_dir at a local copy (config/cpu.yaml)"
        ) from None


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_stsb_file(path: str | os.PathLike) -> pd.DataFrame:
    """One file of the original STS benchmark (TAB, no header, QUOTE_NONE; some rows carry
    two extra source columns): ``sentence1, sentence2, score`` (0-5)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(line) < 7:
                continue
            rows.append((line[5], line[6], float(line[4])))
    return pd.DataFrame(rows, columns=["sentence1", "sentence2", "score"])


def _local_nli_pairs(root: Path) -> list[tuple[str, str, str]]:
    pairs = []
    for f in (
        "snli_dev/dev.jsonl",
        "mnli_dev_matched/dev_matched.jsonl",
        "extra_nli/anli_test.jsonl",
        "extra_nli/scitail_test.jsonl",
        "extra_nli/rte_test.jsonl",
    ):
        if (root / f).exists():
            pairs += [(r["premise"], r["hypothesis"], r.get("label", "")) for r in _jsonl(root / f)]
    for f in ("snli_train_subset18k/train.tsv", "snli_train_subset18k/test.tsv"):
        if (root / f).exists():
            with open(root / f, encoding="utf-8") as fh:
                for line in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
                    if len(line) >= 4:
                        pairs.append((line[2], line[3], ""))
    return pairs


def _mrpc_pairs(root: Path) -> list[tuple[str, str]]:
    out = []
    for f in ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt"):
        with open(root / f, encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(reader, None)
            out += [(r[3], r[4]) for r in reader if len(r) >= 5]
    return out


def training_sentences(
    ref: str,
    data_dir: str | os.PathLike | None = None,
    revisions: Mapping[str, str] | None = None,
    demo_size: int = 3000,
) -> list[str]:
    """Raw (unfiltered) sentences of one training source (``revisions``: commit by hub repo id)."""
    kind, name = _split_ref(ref)
    if kind == "demo":
        if name != "sentences":
            raise LeapError(f"unknown demo source {ref!r}; the demo training source is demo:sentences")
        return demo_sentences(demo_size)
    if kind == "local":
        if name == "nli":
            return [s for p in _local_nli_pairs(_need_dir(data_dir, ref, "nli")) for s in p[:2]]
        if name == "mrpc":
            return [s for p in _mrpc_pairs(_need_dir(data_dir, ref, "mrpc")) for s in p]
        if name == "stsb":  # train split only: dev and test are evaluation sets
            df = read_stsb_file(_need_dir(data_dir, ref, "stsbenchmark") / "sts-train.csv")
            return df["sentence1"].tolist() + df["sentence2"].tolist()
        raise LeapError(f"unknown local source {ref!r}; local sources: local:nli, local:mrpc, local:stsb")
    if name not in HUB_TRAIN:
        raise LeapError(f"unknown hub source {ref!r}; hub sources: {', '.join('hub:' + n for n in HUB_TRAIN)}")
    repo, cfg, cols, splits = HUB_TRAIN[name]
    out: list[str] = []
    for split in splits:
        ds = _hub_load(ref, repo, cfg, split=split, revisions=revisions)
        for c in cols:
            out += [s for s in ds[c] if isinstance(s, str)]
    return out


def check_sources(refs: Iterable[str], data_dir: str | os.PathLike | None) -> None:
    """Fail before any work on an unknown source or a missing local folder."""
    subs = {"nli": "nli", "mrpc": "mrpc", "stsb": "stsbenchmark"}
    hub_names = {*HUB_TRAIN, "stsb", "qqp", *BEIR_NAMES}
    for ref in refs:
        kind, name = _split_ref(ref)
        if kind == "hub" and name not in hub_names:
            raise LeapError(
                f"unknown hub source {ref!r}; hub sources: {', '.join('hub:' + n for n in sorted(hub_names))}"
            )
        if kind == "demo" and name not in DEMO_NAMES:
            raise LeapError(f"unknown demo source {ref!r}; demo sources: {', '.join('demo:' + n for n in DEMO_NAMES)}")
        if kind == "local":
            sub = subs.get(name, f"beir/{name}")
            _need_dir(data_dir, ref, sub)


def stsb_pairs(
    ref: str, data_dir: str | os.PathLike | None = None, revisions: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """STS-B pairs of every split: ``split, sentence1, sentence2, score`` (score on 0-5).

    ``hub:stsb`` is sentence-transformers/stsb (score rescaled there to 0-1; multiplied back
    by 5 here); ``local:stsb`` the original release; ``demo:pairs`` the synthetic graded set.
    """
    kind, name = _split_ref(ref)
    if kind == "demo":
        return demo_pairs()
    frames = []
    if kind == "local":
        root = _need_dir(data_dir, ref, "stsbenchmark")
        for split, f in (("train", "sts-train.csv"), ("dev", "sts-dev.csv"), ("test", "sts-test.csv")):
            frames.append(read_stsb_file(root / f).assign(split=split))
    else:
        for split, hub_split in (("train", "train"), ("dev", "validation"), ("test", "test")):
            ds = _hub_load(ref, HUB_STSB, split=hub_split, revisions=revisions)
            frames.append(
                pd.DataFrame(
                    {
                        "sentence1": ds["sentence1"],
                        "sentence2": ds["sentence2"],
                        "score": np.asarray(ds["score"], dtype=float) * 5.0,
                    }
                ).assign(split=split)
            )
    return pd.concat(frames, ignore_index=True)[["split", "sentence1", "sentence2", "score"]]


def qqp_pairs(ref: str, n: int = 10_000, seed: int = 0, revisions: Mapping[str, str] | None = None) -> pd.DataFrame:
    """QQP evaluation pairs: ``split`` (all ``test``), ``sentence1, sentence2, score`` with
    score = is_duplicate (0/1). ``hub:qqp``: GLUE QQP validation (the GLUE test labels are
    hidden), ``n`` pairs sampled with ``seed``; ``demo:qqp``: SYNTHETIC duplicate pairs from
    the demo generator (duplicate = the two sentences share at least four of five slots)."""
    kind, name = _split_ref(ref)
    if kind == "demo":
        if name != "qqp":
            raise LeapError(f"unknown demo pair set {ref!r}; the demo QQP-style set is demo:qqp")
        df = demo_pairs(n=min(n, 600), seed=3)
        return df.assign(split="test", score=(df["score"] >= 4).astype(float))[
            ["split", "sentence1", "sentence2", "score"]
        ]
    if kind != "hub" or name != "qqp":
        raise LeapError(f"QQP evaluation pairs come from the hub (hub:qqp) or the demo (demo:qqp), got {ref!r}")
    repo, cfg, split = HUB_QQP_EVAL
    ds = _hub_load(ref, repo, cfg, split=split, revisions=revisions)
    df = pd.DataFrame({"sentence1": ds["question1"], "sentence2": ds["question2"], "score": ds["label"]})
    df = df.sample(n=min(n, len(df)), random_state=seed).reset_index(drop=True)
    return df.assign(split="test")[["split", "sentence1", "sentence2", "score"]]


def nli_pairs(
    ref: str,
    data_dir: str | os.PathLike | None = None,
    max_pairs: int = 20_000,
    seed: int = 0,
    revisions: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Labelled NLI pairs for the DeeBERT-style off-ramps: ``sentence1, sentence2, label``."""
    kind, name = _split_ref(ref)
    if kind == "demo":  # another seed than the demo STS-B pairs, so that filtering leaves pairs
        df = demo_pairs(seed=7)
        label = np.where(df["score"] >= 3.5, 0, np.where(df["score"] >= 1.5, 1, 2))
        return pd.DataFrame({"sentence1": df["sentence1"], "sentence2": df["sentence2"], "label": label})
    if kind == "local":
        pairs = [p for p in _local_nli_pairs(_need_dir(data_dir, ref, "nli")) if p[2] in NLI_LABELS]
        df = pd.DataFrame(pairs, columns=["sentence1", "sentence2", "label"])
    else:
        ds = _hub_load(ref, HUB_TRAIN["snli"][0], split="train", revisions=revisions)
        df = pd.DataFrame({"sentence1": ds["premise"], "sentence2": ds["hypothesis"], "label": ds["label"]})
        df = df[df["label"].isin([0, 1, 2])]
        df["label"] = df["label"].map({0: "entailment", 1: "neutral", 2: "contradiction"})
    df["label"] = df["label"].map(NLI_LABELS).astype(int)
    if len(df) > max_pairs:
        df = df.sample(n=max_pairs, random_state=seed)
    return df.reset_index(drop=True)


def retrieval_set(
    ref: str,
    data_dir: str | os.PathLike | None = None,
    download_dir: str | None = None,
    dev_queries: int = 300,
    seed: int = 0,
) -> RetrievalSet:
    """A BEIR data set: ``local:<name>`` from ``data_dir/beir/<name>``, ``hub:<name>`` through
    beir's download helper, ``demo:retrieval`` the synthetic set. Where the set has training
    queries, a seeded sample of ``dev_queries`` of them becomes its dev split (for tuning)."""
    kind, name = _split_ref(ref)
    if kind == "demo":
        if name != "retrieval":
            raise LeapError(f"unknown demo retrieval set {ref!r}; use demo:retrieval")
        r = demo_retrieval()
        r.name = name
        return r
    if kind == "local":  # the set's own dev split, else one carved from its training queries
        folder = _need_dir(data_dir, ref, f"beir/{name}")
        return RetrievalSet.load(folder, name, dev_from=dev_split_of(folder), dev_queries=dev_queries, seed=seed)
    if name not in BEIR_NAMES:
        raise LeapError(f"unknown BEIR set {ref!r}; known: {', '.join(BEIR_NAMES)}")
    try:
        from beir import util

        folder = util.download_and_unzip(BEIR_URL.format(name=name), download_dir or "beir_datasets")
    except Exception as exc:
        raise LeapError(
            f"data source {ref!r}: BEIR download failed ({type(exc).__name__}); without internet "
            f"use local:{name} with data_dir pointing at a copy"
        ) from None
    return RetrievalSet.load(folder, name, dev_from=dev_split_of(folder), dev_queries=dev_queries, seed=seed)


def dev_split_of(folder: str | os.PathLike) -> str:
    """Where a BEIR set's dev split comes from: its own ``qrels/dev.tsv`` (NFCorpus has one),
    else a sample of its training queries (SciFact)."""
    return "dev" if (Path(folder) / "qrels" / "dev.tsv").exists() else "train"


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


# -- built-in synthetic demo data ----------------------------------------------------------
_SUBJ = [
    "the old fisherman",
    "a young teacher",
    "my neighbour",
    "the city council",
    "a small child",
    "the pilot",
    "an engineer",
    "the chef",
    "a group of students",
    "the doctor",
    "her brother",
    "the farmer",
    "a tourist",
    "the police officer",
    "the musician",
    "our manager",
    "the nurse",
    "a street vendor",
    "the scientist",
    "the librarian",
]
_VERB = [
    ("repaired", "fixed"),
    ("painted", "coloured"),
    ("bought", "purchased"),
    ("sold", "traded away"),
    ("cleaned", "washed"),
    ("photographed", "took pictures of"),
    ("found", "discovered"),
    ("carried", "moved"),
    ("inspected", "examined"),
    ("built", "constructed"),
    ("described", "talked about"),
    ("ordered", "requested"),
]
_OBJ = [
    "a wooden boat",
    "the broken bicycle",
    "an old piano",
    "the kitchen table",
    "a red umbrella",
    "the garden fence",
    "a leather bag",
    "the school bus",
    "a silver watch",
    "the front door",
    "a stack of books",
    "the new telescope",
    "a basket of apples",
    "the village bridge",
    "a pair of boots",
    "the antique clock",
]
_PLACE = [
    "near the harbour",
    "in the market square",
    "behind the station",
    "at the end of the street",
    "inside the museum",
    "by the river",
    "on the hill",
    "next to the bakery",
    "in the quiet park",
    "at the airport",
]
_TIME = [
    "early in the morning",
    "after lunch",
    "late at night",
    "on a rainy afternoon",
    "last weekend",
    "during the festival",
    "before sunrise",
    "in the middle of winter",
]
_TOPICS = [
    "boats",
    "bicycles",
    "music",
    "furniture",
    "weather",
    "gardens",
    "transport",
    "clocks",
    "books",
    "fruit",
    "bridges",
    "clothing",
]


def _slots(rng: random.Random) -> tuple[int, int, int, int, int]:
    return (
        rng.randrange(len(_SUBJ)),
        rng.randrange(len(_VERB)),
        rng.randrange(len(_OBJ)),
        rng.randrange(len(_PLACE)),
        rng.randrange(len(_TIME)),
    )


def _render(slots: Sequence[int], variant: int = 0) -> str:
    s, v, o, p, t = slots
    verb = _VERB[v][variant % 2]
    forms = [
        f"{_SUBJ[s]} {verb} {_OBJ[o]} {_PLACE[p]} {_TIME[t]}.",
        f"{_TIME[t].capitalize()}, {_SUBJ[s]} {verb} {_OBJ[o]} {_PLACE[p]}.",
        f"{_PLACE[p].capitalize()}, {_SUBJ[s]} {verb} {_OBJ[o]} {_TIME[t]}.",
    ]
    text = forms[variant % 3]
    return text[0].upper() + text[1:]


def demo_sentences(n: int = 3000, seed: int = 0) -> list[str]:
    """``n`` varied synthetic sentences (templates x word lists; SYNTHETIC)."""
    rng = random.Random(seed)
    out = []
    extra = ["I think that", "Apparently,", "Everyone said that", "It is true that", ""]
    for i in range(n):
        text = _render(_slots(rng), variant=rng.randrange(6))
        lead = extra[rng.randrange(len(extra))]
        if lead:
            text = f"{lead} {text[0].lower()}{text[1:]}"
        if i % 7 == 0:
            text = f"{text[:-1]}, and nobody was surprised."
        out.append(text)
    return out


def demo_pairs(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """Scored pairs with graded similarity (SYNTHETIC): the second sentence shares ``k`` of
    the first's five slots (subject, verb, object, place, time) and the score is ``k``
    (0-5), so the gold order is built into the generator's structure. Splits: 1/3 dev, 2/3 test."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = _slots(rng)
        k = i % 6
        keep = set(rng.sample(range(5), k))
        b = tuple(a[j] if j in keep else _other(rng, j, a[j]) for j in range(5))
        rows.append(
            ("dev" if i % 3 == 0 else "test", _render(a, rng.randrange(6)), _render(b, rng.randrange(6)), float(k))
        )
    return pd.DataFrame(rows, columns=["split", "sentence1", "sentence2", "score"])


def _other(rng: random.Random, slot: int, value: int) -> int:
    n = [len(_SUBJ), len(_VERB), len(_OBJ), len(_PLACE), len(_TIME)][slot]
    return (value + 1 + rng.randrange(n - 1)) % n


def demo_retrieval(n_docs: int = 300, n_queries: int = 60, seed: int = 2, n_dev: int = 30) -> RetrievalSet:
    """A small retrieval set (SYNTHETIC): each document is two sentences about one event;
    a query restates the event's subject, verb and object in other words; the relevant
    document is the one that reports that event."""
    rng = random.Random(seed)
    corpus: dict[str, dict[str, str]] = {}
    events = []
    used = set()
    while len(events) < n_docs:
        a = _slots(rng)
        if a[:3] in used:
            continue
        used.add(a[:3])
        events.append(a)
    for i, a in enumerate(events):
        topic = _TOPICS[a[2] % len(_TOPICS)]
        corpus[f"d{i}"] = {
            "title": f"A note about {topic}",
            "text": f"{_render(a, 0)} It was reported in the local newsletter about {topic}.",
        }
    queries, qrels = {}, {}
    test_docs = rng.sample(range(n_docs), n_queries)
    for j, i in enumerate(test_docs):
        s, v, o, _, _ = events[i]
        queries[f"q{j}"] = f"Which report says that {_SUBJ[s]} {_VERB[v][1]} {_OBJ[o]}?"
        qrels[f"q{j}"] = {f"d{i}": 1}
    dev_queries, dev_qrels = {}, {}
    taken = set(test_docs)
    rest = [i for i in range(n_docs) if i not in taken]
    for j, i in enumerate(rng.sample(rest, min(n_dev, len(rest)))):
        s, v, o, _, _ = events[i]
        dev_queries[f"dq{j}"] = f"Which report says that {_SUBJ[s]} {_VERB[v][1]} {_OBJ[o]}?"
        dev_qrels[f"dq{j}"] = {f"d{i}": 1}
    return RetrievalSet("demo", corpus, queries, qrels, synthetic=True, dev_queries=dev_queries, dev_qrels=dev_qrels)


# -- the data stage as one call (used by workflow_scripts/extract.py) ----------------------
def prepare_data(cfg: DataConfig, out_dir: str | os.PathLike) -> dict:
    """Extract, filter and write everything the later stages read, under ``out_dir``:
    ``sentences.parquet``, ``stats.json``, ``stsb.parquet``, ``qqp.parquet``, ``nli.parquet``,
    ``retrieval/<name>/`` (BEIR layout). Checks every source before reading any."""
    for ref in cfg.refs():
        _split_ref(ref)
    check_sources(cfg.refs(), cfg.data_dir)
    revisions = resolve_revisions(hub_repos(cfg.refs()), cfg.revisions)
    for repo, sha in revisions.items():
        log.info(
            f"{repo} at {sha}{' (pinned)' if cfg.revisions.get(repo) else ' (current head; pin it in data.revisions)'}"
        )
    out = Path(out_dir)
    stsb = stsb_pairs(cfg.stsb, cfg.data_dir, revisions) if cfg.stsb else None
    qqp = qqp_pairs(cfg.qqp, seed=cfg.seed, revisions=revisions) if cfg.qqp else None
    retrieval = [
        retrieval_set(r, cfg.data_dir, dev_queries=cfg.retrieval_dev_queries, seed=cfg.seed) for r in cfg.retrieval
    ]
    exclude = eval_sentences(stsb, pairs=[qqp] if qqp is not None else [], retrieval=retrieval)
    raw = {}
    for ref in cfg.train_sources:
        raw[ref] = training_sentences(ref, cfg.data_dir, revisions, cfg.demo_size)
        log.info(f"{ref}: {len(raw[ref])} raw sentences")
    result = filter_sentences(raw, exclude, cfg.min_chars, cfg.max_sentences, cfg.seed)
    synthetic = any(r.startswith("demo:") for r in cfg.refs())
    result.stats["synthetic"] = synthetic
    result.stats["hub_revisions"] = revisions
    write_sentences(result, out / "sentences.parquet", out / "stats.json")
    for name, df in (("stsb", stsb), ("qqp", qqp)):
        if df is not None:
            with atomic_path(out / f"{name}.parquet", suffix=".parquet") as tmp:
                df.to_parquet(tmp, index=False)
    if cfg.nli:
        nli = nli_pairs(cfg.nli, cfg.data_dir, seed=cfg.seed, revisions=revisions)
        banned = {normalise(s) for s in exclude}
        nli = nli[~nli["sentence1"].map(normalise).isin(banned) & ~nli["sentence2"].map(normalise).isin(banned)]
        with atomic_path(out / "nli.parquet", suffix=".parquet") as tmp:
            nli.reset_index(drop=True).to_parquet(tmp, index=False)
    for r in retrieval:
        r.save(out / "retrieval" / r.name)
    log.info(
        f"kept {result.stats['written']} sentences ({result.stats['leaked_dropped']} leaked, "
        f"{result.stats['duplicates_dropped']} duplicates, {result.stats['short_dropped']} short dropped)"
    )
    return result.stats
