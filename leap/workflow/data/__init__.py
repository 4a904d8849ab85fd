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

The parts: :mod:`leap.workflow.data.sources` (one class per source kind), :mod:`leap.workflow.data.filtering`,
:mod:`leap.workflow.data.retrieval` (BEIR files), :mod:`leap.workflow.data.demo` (the synthetic generator);
this module keeps the functions by source reference and :func:`prepare_data`, the
workflow's extraction stage.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pandas as pd

from leap.files import atomic_path
from leap.workflow.config import DataConfig
from leap.workflow.data.demo import demo_pairs, demo_retrieval, demo_sentences
from leap.workflow.data.filtering import (
    FilterResult,
    eval_sentences,
    filter_sentences,
    normalise,
    read_sentences,
    write_sentences,
)
from leap.workflow.data.retrieval import RetrievalSet, carve_dev, dev_split_of
from leap.workflow.data.sources import (
    BEIR_NAMES,
    DEMO_NAMES,
    HUB_QQP_EVAL,
    HUB_STSB,
    HUB_TRAIN,
    NLI_LABELS,
    DemoSource,
    HubSettings,
    HubSource,
    LocalSource,
    Source,
    check_sources,
    hub_repos,
    read_stsb_file,
    resolve_revisions,
    source,
)

log = logging.getLogger(__name__)

__all__ = [
    "BEIR_NAMES",
    "DEMO_NAMES",
    "HUB_QQP_EVAL",
    "HUB_STSB",
    "HUB_TRAIN",
    "NLI_LABELS",
    "DemoSource",
    "FilterResult",
    "HubSource",
    "LocalSource",
    "RetrievalSet",
    "Source",
    "carve_dev",
    "check_sources",
    "demo_pairs",
    "demo_retrieval",
    "demo_sentences",
    "dev_split_of",
    "eval_sentences",
    "filter_sentences",
    "HubSettings",
    "hub_repos",
    "nli_pairs",
    "normalise",
    "prepare_data",
    "qqp_pairs",
    "read_sentences",
    "read_stsb_file",
    "resolve_revisions",
    "retrieval_set",
    "source",
    "stsb_pairs",
    "training_sentences",
    "write_sentences",
]


def training_sentences(
    ref: str, data_dir: str | os.PathLike | None = None, hub: HubSettings | None = None, demo_size: int = 3000
) -> list[str]:
    """Raw (unfiltered) sentences of one training source (``hub``: how hub sources are reached)."""
    return source(ref, data_dir, hub).training_sentences(demo_size)


def stsb_pairs(ref: str, data_dir: str | os.PathLike | None = None, hub: HubSettings | None = None) -> pd.DataFrame:
    """STS-B pairs of every split: ``split, sentence1, sentence2, score`` (score on 0-5).

    ``hub:stsb`` is sentence-transformers/stsb (score rescaled there to 0-1; multiplied back
    by 5 here); ``local:stsb`` the original release; ``demo:pairs`` the synthetic graded set.
    """
    return source(ref, data_dir, hub).stsb_pairs()


def qqp_pairs(ref: str, n: int = 10_000, seed: int = 0, hub: HubSettings | None = None) -> pd.DataFrame:
    """QQP evaluation pairs: ``split`` (all ``test``), ``sentence1, sentence2, score`` with
    score = is_duplicate (0/1): ``hub:qqp`` (GLUE QQP validation, ``n`` pairs sampled with
    ``seed``) or ``demo:qqp`` (SYNTHETIC duplicates)."""
    return source(ref, hub=hub).qqp_pairs(n, seed)


def nli_pairs(
    ref: str,
    data_dir: str | os.PathLike | None = None,
    max_pairs: int = 20_000,
    seed: int = 0,
    hub: HubSettings | None = None,
) -> pd.DataFrame:
    """Labelled NLI pairs for the DeeBERT-style off-ramps: ``sentence1, sentence2, label``."""
    return source(ref, data_dir, hub).nli_pairs(max_pairs, seed)


def retrieval_set(
    ref: str,
    data_dir: str | os.PathLike | None = None,
    download_dir: str | None = None,
    dev_queries: int = 300,
    seed: int = 0,
    hub: HubSettings | None = None,
) -> RetrievalSet:
    """A BEIR data set: ``local:<name>`` from ``data_dir/beir/<name>``, ``hub:<name>``
    downloaded and checked against BEIR's checksums (:mod:`leap.workflow.data.beir_download`),
    ``demo:retrieval`` the synthetic set; its dev split is the set's own (NFCorpus) or a seeded
    sample of ``dev_queries`` training queries (SciFact)."""
    return source(ref, data_dir, hub).retrieval_set(dev_queries, seed, download_dir)


def prepare_data(cfg: DataConfig, out_dir: str | os.PathLike) -> dict:
    """Extract, filter and write everything the later stages read, under ``out_dir``:
    ``sentences.parquet``, ``stats.json``, ``stsb.parquet``, ``qqp.parquet``, ``nli.parquet``,
    ``retrieval/<name>/`` (BEIR layout). Checks every source before reading any."""
    check_sources(cfg.refs(), cfg.data_dir)
    retry = HubSettings.of(cfg).retry
    revisions = resolve_revisions(hub_repos(cfg.refs()), cfg.revisions, retry)
    hub = HubSettings.of(cfg, revisions)
    for repo, sha in revisions.items():
        log.info(
            f"{repo} at {sha}{' (pinned)' if cfg.revisions.get(repo) else ' (current head; pin it in data.revisions)'}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stsb = stsb_pairs(cfg.stsb, cfg.data_dir, hub) if cfg.stsb else None
    qqp = qqp_pairs(cfg.qqp, seed=cfg.seed, hub=hub) if cfg.qqp else None
    with tempfile.TemporaryDirectory(dir=out) as downloads:  # BEIR zips; each set is saved below
        retrieval = [
            retrieval_set(r, cfg.data_dir, downloads, cfg.retrieval_dev_queries, cfg.seed, hub) for r in cfg.retrieval
        ]
    exclude = eval_sentences(stsb, pairs=[qqp] if qqp is not None else [], retrieval=retrieval)
    raw = {}
    for ref in cfg.train_sources:
        raw[ref] = training_sentences(ref, cfg.data_dir, hub, cfg.demo_size)
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
        nli = nli_pairs(cfg.nli, cfg.data_dir, seed=cfg.seed, hub=hub)
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
