"""Shared fixtures: tiny random models built offline, the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one compute thread per worker (and per process it starts): under `pytest -n 2` each
    # worker's torch would otherwise take every core, and the two workers' thread pools, with
    # the workflow jobs they start, spin against each other (on 2 cores the suite took 7:04
    # with 12.5 user CPU-minutes, and 6:01 with 10.3 with this line). A test or job that sets
    # its threads still gets them.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:  # imported before this file: the variable came too late for it
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SENTENCES = [
    "a man is playing a guitar on a small stage",
    "the dog runs",
    "who won the football match last night?",
    "two children are building a sandcastle near the water while their parents read",
    "the bank raised interest rates",
    "a cat is sleeping on a warm windowsill",
    "scientists detected water vapour in the atmosphere of a distant planet",
    "please send me the report by friday",
    "the train leaves every twenty minutes on weekdays and every hour on sundays",
    "a woman is slicing tomatoes",
    "heavy rain caused flooding",
    "the museum opens a new exhibition on ancient maps this spring",
]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Folders of tiny random SentenceTransformer models: bert, mpnet, distilbert (6 layers)."""
    from leap.workflow.models import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {a: build_tiny_model(root / a, arch=a, num_layers=6, seed=1) for a in ("bert", "mpnet", "distilbert")}


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from leap.serving.sources import packaged_minilm_path

    return packaged_minilm_path()


@pytest.fixture
def sentences() -> list[str]:
    return list(SENTENCES)


def pytest_collection_modifyitems(config, items):
    """The slow tests first (a stable sort): under `pytest -n 2` they start at once, on both
    workers, instead of last, so the suite's wall time is the longest of them, not their sum
    plus everything before them. The Makefile passes `--no-loadscope-reorder`: pytest-xdist
    >= 3.8 otherwise orders modules by their number of tests, and this order is lost."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)
