"""Data sources, one class per kind (``hub:``, ``local:``, ``demo:``) behind one interface.

A source is named ``kind:name`` (:func:`source` parses it). Each kind answers the same
questions: is the name known and its data there (:meth:`Source.check`), its raw training
sentences, STS-B pairs, QQP pairs, NLI pairs, a BEIR retrieval set, and the Hub repos it
reads. A question a kind cannot answer (QQP pairs from a local folder, say) is one error
naming the sources that can.

- :class:`HubSource`: Hugging Face Hub datasets through ``datasets.load_dataset`` at one
  commit per repo (``revisions``), BEIR sets through beir's download helper;
- :class:`LocalSource`: a local folder with the layout ``stsbenchmark/``, ``nli/``,
  ``mrpc/``, ``beir/<name>/`` (machines without internet);
- :class:`DemoSource`: the built-in SYNTHETIC data (:mod:`leap.workflow.data.demo`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leap.errors import LeapError
from leap.workflow.config import BEIR_URL, DataConfig
from leap.workflow.data.beir_download import download_beir
from leap.workflow.data.demo import demo_pairs, demo_retrieval, demo_sentences
from leap.workflow.data.retrieval import RetrievalSet, dev_split_of
from leap.workflow.data.retry import Retry, first_line, is_transient

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
BEIR_NAMES = ("arguana", "nfcorpus", "scifact", "scidocs", "fiqa")
DEMO_NAMES = ("sentences", "pairs", "qqp", "retrieval")  # built-in SYNTHETIC data
LOCAL_FOLDERS = {"nli": "nli", "mrpc": "mrpc", "stsb": "stsbenchmark"}  # else beir/<name>
SCORED = ["split", "sentence1", "sentence2", "score"]


class Source:
    """One data source ``kind:name``; the subclasses answer for their kind."""

    kind = ""
    names: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name
        self.ref = f"{self.kind}:{name}"

    def check(self) -> None:
        """Fail before any work on an unknown name or missing data."""
        if self.name not in self.names:
            raise LeapError(
                f"unknown {self.kind} source {self.ref!r}; {self.kind} sources: "
                f"{', '.join(f'{self.kind}:{n}' for n in sorted(self.names))}"
            )

    def _cannot(self, what: str, where: str) -> LeapError:
        return LeapError(f"{what} come from {where}, not {self.ref!r}")

    def training_sentences(self, demo_size: int = 3000) -> list[str]:
        """Raw (unfiltered) sentences of this training source."""
        raise self._cannot("training sentences", "hub:{snli,multi_nli,qqp,mrpc,xnli}, local:{nli,mrpc,stsb}")

    def stsb_pairs(self) -> pd.DataFrame:
        """STS-B pairs of every split: ``split, sentence1, sentence2, score`` (score on 0-5)."""
        raise self._cannot("STS-B pairs", "hub:stsb, local:stsb or demo:pairs")

    def qqp_pairs(self, n: int = 10_000, seed: int = 0) -> pd.DataFrame:
        """QQP evaluation pairs: ``split`` (all ``test``), ``sentence1, sentence2, score`` (0/1)."""
        raise self._cannot("QQP evaluation pairs", "the hub (hub:qqp) or the demo (demo:qqp)")

    def nli_pairs(self, max_pairs: int = 20_000, seed: int = 0) -> pd.DataFrame:
        """Labelled NLI pairs for the DeeBERT-style off-ramps: ``sentence1, sentence2, label``."""
        raise self._cannot("NLI pairs", "hub:snli, local:nli or demo:pairs")

    def retrieval_set(self, dev_queries: int = 300, seed: int = 0, download_dir: str | None = None) -> RetrievalSet:
        """A BEIR set with a dev split for tuning (its own dev qrels, else training queries)."""
        raise self._cannot("retrieval sets", "hub:<BEIR name>, local:<BEIR folder> or demo:retrieval")

    def hub_repos(self) -> list[str]:
        """The Hugging Face Hub dataset repos this source reads (BEIR downloads are not Hub repos)."""
        return []


def _nli_frame(pairs: list[tuple[str, str, Any]], max_pairs: int, seed: int) -> pd.DataFrame:
    df = pd.DataFrame(pairs, columns=["sentence1", "sentence2", "label"])
    df["label"] = df["label"].map(NLI_LABELS).astype(int)
    if len(df) > max_pairs:
        df = df.sample(n=max_pairs, random_state=seed)
    return df.reset_index(drop=True)


# -- the Hugging Face Hub (and BEIR's server) ------------------------------------------------------
class HubSource(Source):
    """Hub datasets at one commit per repo (``revisions``: commit by repo id)."""

    kind = "hub"
    names = (*HUB_TRAIN, "stsb", "qqp", *BEIR_NAMES)

    def __init__(self, name: str, hub: HubSettings | None = None) -> None:
        super().__init__(name)
        self.hub = hub or HubSettings()
        self.revisions = dict(self.hub.revisions)

    def load(self, repo: str, *args: Any, **kwargs: Any) -> Any:
        """``datasets.load_dataset(repo, ...)`` at the run's commit, retried after a transient
        failure (:mod:`leap.workflow.data.retry`), or one line naming the source."""
        from datasets import load_dataset

        retry = self.hub.retry
        try:
            return retry.call(lambda: load_dataset(repo, *args, revision=self.revisions.get(repo), **kwargs), repo)
        except Exception as exc:  # offline, missing revision, a server that keeps failing -> one line
            transient = is_transient(exc)
            tried = f" after {retry.attempts} attempts" if transient else ""
            fix = "rerun when the Hub answers" if transient else "check the repository id and data.revisions"
            raise LeapError(
                f"data source {self.ref!r}: could not load {repo} from the Hugging Face Hub{tried} "
                f"({first_line(exc)}); {fix}, or without internet use local: sources and point data_dir at a "
                "local copy (config/cpu.yaml)"
            ) from None

    def hub_repos(self) -> list[str]:
        out = [HUB_TRAIN[self.name][0]] if self.name in HUB_TRAIN else []
        if self.name == "stsb":
            out.append(HUB_STSB)
        if self.name == "qqp":
            out.append(HUB_QQP_EVAL[0])
        return list(dict.fromkeys(out))

    def training_sentences(self, demo_size: int = 3000) -> list[str]:
        if self.name not in HUB_TRAIN:
            raise LeapError(f"unknown hub source {self.ref!r}; hub sources: {', '.join('hub:' + n for n in HUB_TRAIN)}")
        repo, cfg, cols, splits = HUB_TRAIN[self.name]
        out: list[str] = []
        for split in splits:
            ds = self.load(repo, cfg, split=split)
            for c in cols:
                out += [s for s in ds[c] if isinstance(s, str)]
        return out

    def stsb_pairs(self) -> pd.DataFrame:
        """sentence-transformers/stsb, whose 0-1 scores are multiplied back by 5."""
        if self.name != "stsb":
            return super().stsb_pairs()
        frames = []
        for split, hub_split in (("train", "train"), ("dev", "validation"), ("test", "test")):
            ds = self.load(HUB_STSB, split=hub_split)
            scores = np.asarray(ds["score"], dtype=float) * 5.0
            frames.append(
                pd.DataFrame({"sentence1": ds["sentence1"], "sentence2": ds["sentence2"], "score": scores}).assign(
                    split=split
                )
            )
        return pd.concat(frames, ignore_index=True)[SCORED]

    def qqp_pairs(self, n: int = 10_000, seed: int = 0) -> pd.DataFrame:
        """GLUE QQP validation (the GLUE test labels are hidden), ``n`` pairs sampled with ``seed``."""
        if self.name != "qqp":
            return super().qqp_pairs(n, seed)
        repo, cfg, split = HUB_QQP_EVAL
        ds = self.load(repo, cfg, split=split)
        df = pd.DataFrame({"sentence1": ds["question1"], "sentence2": ds["question2"], "score": ds["label"]})
        df = df.sample(n=min(n, len(df)), random_state=seed).reset_index(drop=True)
        return df.assign(split="test")[SCORED]

    def nli_pairs(self, max_pairs: int = 20_000, seed: int = 0) -> pd.DataFrame:
        """SNLI train; rows labelled -1 (no gold label) are dropped."""
        if self.name != "snli":
            return super().nli_pairs(max_pairs, seed)
        ds = self.load(HUB_TRAIN["snli"][0], split="train")
        names = {0: "entailment", 1: "neutral", 2: "contradiction"}
        pairs = [(a, b, names[y]) for a, b, y in zip(ds["premise"], ds["hypothesis"], ds["label"]) if y in names]
        return _nli_frame(pairs, max_pairs, seed)

    def retrieval_set(self, dev_queries: int = 300, seed: int = 0, download_dir: str | None = None) -> RetrievalSet:
        if self.name not in BEIR_NAMES:
            raise LeapError(f"unknown BEIR set {self.ref!r}; known: {', '.join(BEIR_NAMES)}")
        url = self.hub.beir_url.format(name=self.name)
        try:
            folder = download_beir(
                self.name, url, download_dir or "beir_datasets", self.hub.beir_checksums, self.hub.retry
            )
        except LeapError:
            raise
        except Exception as exc:
            raise LeapError(
                f"data source {self.ref!r}: BEIR download from {url} failed ({type(exc).__name__}); without "
                f"internet use local:{self.name} with data_dir pointing at a copy, or set data.beir_url to a mirror"
            ) from None
        split = dev_split_of(folder)
        return RetrievalSet.load(folder, self.name, dev_from=split, dev_queries=dev_queries, seed=seed)


# -- a local folder ------------------------------------------------------------------------------------
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


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class LocalSource(Source):
    """A local copy in the layout ``stsbenchmark/``, ``nli/``, ``mrpc/``, ``beir/<name>/``."""

    kind = "local"

    def __init__(self, name: str, data_dir: str | os.PathLike | None = None) -> None:
        super().__init__(name)
        self.data_dir = data_dir

    def folder(self) -> Path:
        """This source's folder under ``data_dir`` (``beir/<name>`` for a retrieval set)."""
        if self.data_dir is None:
            raise LeapError(
                f"data source {self.ref!r} reads a local data folder, but data_dir is not set; "
                f"set data_dir (e.g. --config data_dir=/path/to/data)"
            )
        path = Path(self.data_dir) / LOCAL_FOLDERS.get(self.name, f"beir/{self.name}")
        if not path.exists():
            raise LeapError(
                f"data source {self.ref!r}: {path} does not exist; point data_dir at a folder with "
                f"the layout stsbenchmark/, nli/, mrpc/, beir/"
            )
        return path

    def check(self) -> None:
        self.folder()

    def nli_triples(self) -> list[tuple[str, str, str]]:
        """(premise, hypothesis, label or "") of every NLI file the folder holds."""
        root, pairs = self.folder(), []
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

    def mrpc_pairs(self) -> list[tuple[str, str]]:
        out = []
        for f in ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt"):
            with open(self.folder() / f, encoding="utf-8-sig") as fh:
                reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
                next(reader, None)
                out += [(r[3], r[4]) for r in reader if len(r) >= 5]
        return out

    def training_sentences(self, demo_size: int = 3000) -> list[str]:
        if self.name == "nli":
            return [s for p in self.nli_triples() for s in p[:2]]
        if self.name == "mrpc":
            return [s for p in self.mrpc_pairs() for s in p]
        if self.name == "stsb":  # train split only: dev and test are evaluation sets
            df = read_stsb_file(self.folder() / "sts-train.csv")
            return df["sentence1"].tolist() + df["sentence2"].tolist()
        raise LeapError(f"unknown local source {self.ref!r}; local sources: local:nli, local:mrpc, local:stsb")

    def stsb_pairs(self) -> pd.DataFrame:
        """The original release's three files."""
        if self.name != "stsb":
            return super().stsb_pairs()
        root = self.folder()
        files = (("train", "sts-train.csv"), ("dev", "sts-dev.csv"), ("test", "sts-test.csv"))
        frames = [read_stsb_file(root / f).assign(split=split) for split, f in files]
        return pd.concat(frames, ignore_index=True)[SCORED]

    def nli_pairs(self, max_pairs: int = 20_000, seed: int = 0) -> pd.DataFrame:
        if self.name != "nli":
            return super().nli_pairs(max_pairs, seed)
        return _nli_frame([p for p in self.nli_triples() if p[2] in NLI_LABELS], max_pairs, seed)

    def retrieval_set(self, dev_queries: int = 300, seed: int = 0, download_dir: str | None = None) -> RetrievalSet:
        """The set's own dev split, else one carved from its training queries."""
        folder = self.folder()
        split = dev_split_of(folder)
        return RetrievalSet.load(folder, self.name, dev_from=split, dev_queries=dev_queries, seed=seed)


# -- the built-in synthetic data -----------------------------------------------------------------------
class DemoSource(Source):
    """The built-in SYNTHETIC data (:mod:`leap.workflow.data.demo`)."""

    kind = "demo"
    names = DEMO_NAMES

    def training_sentences(self, demo_size: int = 3000) -> list[str]:
        if self.name != "sentences":
            raise LeapError(f"unknown demo source {self.ref!r}; the demo training source is demo:sentences")
        return demo_sentences(demo_size)

    def stsb_pairs(self) -> pd.DataFrame:
        return demo_pairs()

    def qqp_pairs(self, n: int = 10_000, seed: int = 0) -> pd.DataFrame:
        """Duplicate = the two sentences share at least four of five slots (score >= 4)."""
        if self.name != "qqp":
            raise LeapError(f"unknown demo pair set {self.ref!r}; the demo QQP-style set is demo:qqp")
        df = demo_pairs(n=min(n, 600), seed=3)
        return df.assign(split="test", score=(df["score"] >= 4).astype(float))[SCORED]

    def nli_pairs(self, max_pairs: int = 20_000, seed: int = 0) -> pd.DataFrame:
        """Labels from the graded demo pairs (another seed than the demo STS-B pairs, so that
        filtering leaves pairs)."""
        df = demo_pairs(seed=7)
        label = np.where(df["score"] >= 3.5, 0, np.where(df["score"] >= 1.5, 1, 2))
        return pd.DataFrame({"sentence1": df["sentence1"], "sentence2": df["sentence2"], "label": label})

    def retrieval_set(self, dev_queries: int = 300, seed: int = 0, download_dir: str | None = None) -> RetrievalSet:
        if self.name != "retrieval":
            raise LeapError(f"unknown demo retrieval set {self.ref!r}; use demo:retrieval")
        r = demo_retrieval()
        r.name = self.name
        return r


KINDS: dict[str, type[Source]] = {"hub": HubSource, "local": LocalSource, "demo": DemoSource}


@dataclass(frozen=True)
class HubSettings:
    """How ``hub:`` sources are reached: commits by repo id, BEIR's server and checksums, and
    the retry policy for transient failures (the config's ``data`` section)."""

    revisions: Mapping[str, str] = field(default_factory=dict)
    beir_url: str = BEIR_URL
    beir_checksums: Mapping[str, str] = field(default_factory=dict)
    retry: Retry = field(default_factory=Retry)

    @classmethod
    def of(cls, cfg: DataConfig, revisions: Mapping[str, str] | None = None) -> HubSettings:
        retry = Retry(cfg.download_attempts, cfg.download_backoff)
        return cls(dict(revisions or cfg.revisions), cfg.beir_url, dict(cfg.beir_checksums), retry)


def source(ref: str, data_dir: str | os.PathLike | None = None, hub: HubSettings | None = None) -> Source:
    """The source ``ref`` (``kind:name``) names, or one error saying how sources are named."""
    if ":" not in ref:
        raise LeapError(f"data source {ref!r} must be named kind:name with kind hub, local or demo (e.g. local:nli)")
    kind, name = ref.split(":", 1)
    if kind not in KINDS:
        raise LeapError(f"data source {ref!r}: unknown kind {kind!r}; use hub:, local: or demo:")
    if kind == "hub":
        return HubSource(name, hub)
    if kind == "local":
        return LocalSource(name, data_dir)
    return DemoSource(name)


def hub_repos(refs: Iterable[str]) -> list[str]:
    """The Hugging Face Hub dataset repos that ``refs`` read (BEIR downloads are not Hub repos)."""
    return list(dict.fromkeys(repo for ref in refs for repo in source(ref).hub_repos()))


def resolve_revisions(
    repos: Iterable[str], pinned: Mapping[str, str] | None = None, retry: Retry | None = None
) -> dict[str, str]:
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

            out[repo] = (retry or Retry()).call(lambda r=repo: HfApi().dataset_info(r).sha, repo)
        except Exception as exc:
            raise LeapError(
                f"hub dataset {repo!r}: could not reach the Hugging Face Hub to resolve its revision "
                f"({type(exc).__name__}); without internet use local: sources and point data_dir at a "
                f"local copy (config/cpu.yaml), or pin data.revisions and use a warm datasets cache"
            ) from None
    return out


def check_sources(refs: Iterable[str], data_dir: str | os.PathLike | None) -> None:
    """Fail before any work on an unknown source or a missing local folder."""
    for ref in refs:
        source(ref, data_dir).check()
