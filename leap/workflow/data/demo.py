"""Built-in SYNTHETIC data written for this project (templates and word lists), so that
``make demo`` and the tests run offline anywhere: training sentences, graded pairs, QQP-style
duplicates and a small retrieval set. Labelled *synthetic* wherever it appears."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pandas as pd

from leap.workflow.data.retrieval import RetrievalSet

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
