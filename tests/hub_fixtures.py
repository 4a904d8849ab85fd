"""Stand-ins for every Hub dataset and BEIR download the paper configuration reads, with the
real ones' shape (served by tests/hub_stub.py; used by tests/test_rehearsal.py).

Each stand-in has the real repository id, configuration names, split names, file layout,
column names, dtypes and label encodings; only the rows are made up (the built-in sentences),
a few dozen per split. Where each fact comes from is written beside it (``source``): the
dataset card's ``dataset_info`` / ``configs`` block at the Hub, or the BEIR zip. The BEIR
layout is also checked against the real copies in the data folder when one is present
(tests/test_rehearsal.py).
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import pandas as pd
import yaml

from leap.core.builtin import builtin_sentences

NLI = ["entailment", "neutral", "contradiction"]

# repo -> {configs: {config: {splits: {split: file}, features: {column: dtype}}}, source, notes}
# dtype: "string", "int32", "float64", or ("class_label", [names]) (ints; -1 = no label).
HUB = {
    "stanfordnlp/snli": {
        "source": "https://huggingface.co/datasets/stanfordnlp/snli (card: dataset_info, configs); "
        "TFDS catalog huggingface:snli/plain_text (features, -1 labels)",
        "notes": "train/validation/test; label -1 marks pairs without a gold label (about 1.8% of train)",
        "configs": {
            "plain_text": {
                "splits": {s: f"plain_text/{s}-00000-of-00001.parquet" for s in ("test", "validation", "train")},
                "features": {"premise": "string", "hypothesis": "string", "label": ("class_label", NLI)},
                "no_label": True,
            }
        },
    },
    "nyu-mll/multi_nli": {
        "source": "https://huggingface.co/datasets/nyu-mll/multi_nli (card: dataset_info, configs)",
        "notes": "splits train, validation_matched, validation_mismatched; binary and tree parses beside the text",
        "configs": {
            "default": {
                "splits": {
                    s: f"data/{s}-00000-of-00001.parquet"
                    for s in ("train", "validation_matched", "validation_mismatched")
                },
                "features": {
                    "promptID": "int32",
                    "pairID": "string",
                    "premise": "string",
                    "premise_binary_parse": "string",
                    "premise_parse": "string",
                    "hypothesis": "string",
                    "hypothesis_binary_parse": "string",
                    "hypothesis_parse": "string",
                    "genre": "string",
                    "label": ("class_label", NLI),
                },
            }
        },
    },
    "nyu-mll/glue": {
        "source": "https://huggingface.co/datasets/nyu-mll/glue (card: dataset_info per config, configs; "
        "commit 358bc66 'Reorder split names')",
        "notes": "one folder per task; test labels are hidden (-1); every row has an int32 idx",
        "configs": {
            "qqp": {
                "splits": {s: f"qqp/{s}-00000-of-00001.parquet" for s in ("train", "validation", "test")},
                "features": {
                    "question1": "string",
                    "question2": "string",
                    "label": ("class_label", ["not_duplicate", "duplicate"]),
                    "idx": "int32",
                },
                "hidden_test": True,
            },
            "mrpc": {
                "splits": {s: f"mrpc/{s}-00000-of-00001.parquet" for s in ("train", "validation", "test")},
                "features": {
                    "sentence1": "string",
                    "sentence2": "string",
                    "label": ("class_label", ["not_equivalent", "equivalent"]),
                    "idx": "int32",
                },
            },
        },
    },
    "facebook/xnli": {
        "source": "https://huggingface.co/datasets/facebook/xnli (card: dataset_info per language, configs)",
        "notes": "one configuration per language (en read here) and all_languages; train/test/validation",
        "configs": {
            "en": {
                "splits": {s: f"en/{s}-00000-of-00001.parquet" for s in ("train", "test", "validation")},
                "features": {"premise": "string", "hypothesis": "string", "label": ("class_label", NLI)},
            }
        },
    },
    "sentence-transformers/stsb": {
        "source": "https://huggingface.co/datasets/sentence-transformers/stsb/blob/ab7a5ac0e35aa22088bdcf23e7fd99b220e53308/"
        "README.md (features sentence1, sentence2 string, score float64; configs data/{split}-*)",
        "notes": "scores normalised to [0, 1] (the card: 'normalized to between 0 and 1'); 5,749 / 1,500 / 1,379 rows",
        "configs": {
            "default": {
                "splits": {s: f"data/{s}-00000-of-00001.parquet" for s in ("train", "validation", "test")},
                "features": {"sentence1": "string", "sentence2": "string", "score": "float64"},
            }
        },
    },
}

# BEIR zips (https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip, the
# BEIR README's links): <name>/corpus.jsonl {_id, title, text, metadata}, queries.jsonl {_id, text,
# metadata}, qrels/<split>.tsv with the header query-id, corpus-id, score. Which qrels splits each
# set ships is BEIR's table (README "Available Datasets"); ids as in the real files (SciFact's are
# digits, NFCorpus' PLAIN-n / MED-n).
BEIR = {
    "arguana": {"qrels": ("test",), "ids": ("test-{i}", "doc-{i}")},
    "nfcorpus": {"qrels": ("train", "dev", "test"), "ids": ("PLAIN-{i}", "MED-{i}")},
    "scifact": {"qrels": ("train", "test"), "ids": ("{i}", "{j}")},
    "scidocs": {"qrels": ("test",), "ids": ("q{i}", "d{i}")},
    "fiqa": {"qrels": ("train", "dev", "test"), "ids": ("{i}", "{j}")},
}


def _readme(repo: str, spec: dict) -> str:
    """The card's YAML block as the Hub writes it (``dataset_info`` and ``configs``)."""

    def feature(name: str, dtype) -> dict:
        if isinstance(dtype, tuple):
            return {"name": name, "dtype": {"class_label": {"names": {str(i): n for i, n in enumerate(dtype[1])}}}}
        return {"name": name, "dtype": dtype}

    info, configs = [], []
    for cfg, c in spec["configs"].items():
        info.append({"config_name": cfg, "features": [feature(k, v) for k, v in c["features"].items()]})
        configs.append(
            {
                "config_name": cfg,
                "data_files": [
                    {"split": s, "path": p.replace("-00000-of-00001.parquet", "-*")} for s, p in c["splits"].items()
                ],
            }
        )
    if len(configs) == 1:
        configs[0]["default"] = True
    meta = yaml.safe_dump({"dataset_info": info, "configs": configs}, sort_keys=False)
    return f"---\n{meta}---\n\n# Stand-in for {repo}\n\nSource of its shape: {spec['source']}\n"


def _column(dtype, n: int, rng: random.Random, sents: list[str], split: str, spec: dict) -> list:
    if isinstance(dtype, tuple):
        k = len(dtype[1])
        if spec.get("hidden_test") and split == "test":
            return [-1] * n
        labels = [rng.randrange(k) for _ in range(n)]
        if spec.get("no_label"):
            labels[::9] = [-1] * len(labels[::9])
        return labels
    if dtype == "int32":
        return list(range(n))
    if dtype == "float64":
        return [round(rng.random(), 2) for _ in range(n)]
    return [_text(rng, sents) for _ in range(n)]


_COUNT = iter(range(10**9))


def _text(rng: random.Random, sents: list[str]) -> str:
    """A made-up sentence no other stand-in row repeats (real sets rarely share sentences, and
    the run drops training sentences that are also evaluation sentences)."""
    return f"{rng.choice(sents).rstrip('.?!')} on day {next(_COUNT)}."


def _table(spec: dict, split: str, n: int, rng: random.Random, sents: list[str]):
    import pyarrow as pa

    cols, fields = {}, []
    for name, dtype in spec["features"].items():
        cols[name] = _column(dtype, n, rng, sents, split, spec)
        kind = "int64" if isinstance(dtype, tuple) else dtype
        fields.append(
            pa.field(
                name, {"string": pa.string(), "int32": pa.int32(), "float64": pa.float64(), "int64": pa.int64()}[kind]
            )
        )
    return pa.table(cols, schema=pa.schema(fields))


def build_hub(root: Path, rows: int = 60, seed: int = 0) -> Path:
    """Write every stand-in repository under ``root/<org>/<name>/`` and the BEIR zips under
    ``root/beir/``; returns ``root``."""
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    sents = builtin_sentences()
    for repo, spec in HUB.items():
        d = root / repo
        for cfg in spec["configs"].values():
            for split, path in cfg["splits"].items():
                (d / path).parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(_table(cfg, split, rows, rng, sents), d / path)
        (d / "README.md").write_text(_readme(repo, spec), encoding="utf-8")
    (root / "beir").mkdir(parents=True, exist_ok=True)
    for name, spec in BEIR.items():
        (root / "beir" / f"{name}.zip").write_bytes(_beir_zip(name, spec, rng, sents))
    return root


def beir_checksums(root: Path) -> dict[str, str]:
    """``data.beir_checksums`` for the stand-in zips under ``root/beir/`` (their bytes are not
    BEIR's, so BEIR's published checksums would refuse them)."""
    import hashlib

    return {z.stem: "md5:" + hashlib.md5(z.read_bytes()).hexdigest() for z in sorted((root / "beir").glob("*.zip"))}


def _beir_zip(name: str, spec: dict, rng: random.Random, sents: list[str], docs: int = 80, queries: int = 40) -> bytes:
    qid, did = spec["ids"]
    corpus = [
        {"_id": did.format(i=i, j=10_000 + i), "title": _text(rng, sents), "text": _text(rng, sents), "metadata": {}}
        for i in range(docs)
    ]
    qs = [{"_id": qid.format(i=i, j=i), "text": _text(rng, sents), "metadata": {}} for i in range(queries)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{name}/corpus.jsonl", "".join(json.dumps(r) + "\n" for r in corpus))
        z.writestr(f"{name}/queries.jsonl", "".join(json.dumps(r) + "\n" for r in qs))
        per = max(1, queries // len(spec["qrels"]))
        for k, split in enumerate(spec["qrels"]):
            rows = ["query-id\tcorpus-id\tscore"]
            for q in qs[k * per : (k + 1) * per]:
                for doc in rng.sample(corpus, 2):
                    rows.append(f"{q['_id']}\t{doc['_id']}\t{rng.choice([1, 2]) if name == 'nfcorpus' else 1}")
            z.writestr(f"{name}/qrels/{split}.tsv", "\n".join(rows) + "\n")
    return buf.getvalue()


def stand_in_frame(repo: str, config: str, split: str, root: Path) -> pd.DataFrame:
    """One split of a stand-in, as written (for tests of the fixtures themselves)."""
    return pd.read_parquet(root / repo / HUB[repo]["configs"][config]["splits"][split])


def plain_copy(st_folder: str | Path, dest: Path) -> Path:
    """A sentence-transformers folder as a plain transformers checkpoint (no modules.json,
    no pooling module): the shape of ``huawei-noah/TinyBERT_General_6L_768D``."""
    import shutil

    shutil.copytree(st_folder, dest)
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        (dest / name).unlink(missing_ok=True)
    for sub in [*dest.glob("*_Pooling"), *dest.glob("*_Normalize")]:
        shutil.rmtree(sub)
    return dest


def build_models(root: Path) -> dict[str, str]:
    """Tiny random stand-ins for the paper configuration's models, same architectures and
    depths, same kind of folder: the 24-layer teacher (a sentence-transformers BERT), the
    12-layer student init (``microsoft/MiniLM-L12-H384-uncased`` is a plain transformers BERT)
    and the published checkpoints (two sentence-transformers BERTs of 12 and 6 layers, a plain
    6-layer BERT as TinyBERT, a plain 6-layer DistilBERT)."""
    from leap.workflow.models import build_tiny_model

    def st(name: str, arch: str, layers: int) -> str:
        return build_tiny_model(root / name, arch=arch, num_layers=layers, seed=layers)

    def plain(name: str, arch: str, layers: int) -> str:
        return str(plain_copy(st(f"{name}-st", arch, layers), root / name))

    return {
        "sentence-transformers/bert-large-nli-mean-tokens": st("teacher", "bert", 24),
        "microsoft/MiniLM-L12-H384-uncased": plain("student", "bert", 12),
        "sentence-transformers/all-MiniLM-L12-v2": st("minilm-l12", "bert", 12),
        "huawei-noah/TinyBERT_General_6L_768D": plain("tinybert", "bert", 6),
        "sentence-transformers/all-MiniLM-L6-v2": st("minilm-l6", "bert", 6),
        "distilbert-base-uncased": plain("distilbert", "distilbert", 6),
    }
