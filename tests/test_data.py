"""Filtering, local parsers (on hand-made files in the shared layout), demo data, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from leap.errors import LeapError
from leap.workflow.config import DataConfig
from leap.workflow.data import (
    RetrievalSet,
    demo_pairs,
    demo_retrieval,
    demo_sentences,
    filter_sentences,
    normalise,
    prepare_data,
    read_stsb_file,
    retrieval_set,
    stsb_pairs,
    training_sentences,
)

LONG = "a sentence that is clearly longer than twenty characters"


def test_filter_exact_sentences_and_stats():
    sources = {
        "a": [
            LONG,
            "  " + LONG.replace(" ", "   ") + "\n",
            "short one",
            "the leaked sentence from the test set",
            "another long enough sentence here",
        ],
        "b": [LONG, "yet another sentence long enough", "exactly twenty chars"],
        "empty": [],
    }
    res = filter_sentences(sources, exclude=["the  leaked sentence from the test set"], min_chars=20)
    assert res.sentences == [LONG, "another long enough sentence here", "yet another sentence long enough"]
    assert res.sources == ["a", "a", "b"]
    st = res.stats
    assert st["sources"]["a"] == {"read": 5, "short": 1, "duplicate": 1, "leaked": 1, "kept": 2}
    assert st["sources"]["b"] == {"read": 3, "short": 1, "duplicate": 1, "leaked": 0, "kept": 1}
    assert st["sources"]["empty"]["read"] == 0
    assert (st["short_dropped"], st["duplicates_dropped"], st["leaked_dropped"], st["written"]) == (2, 2, 1, 3)


def test_filter_cap_is_seeded_and_keeps_order():
    sents = [f"sentence number {i:04d} is long enough" for i in range(100)]
    a = filter_sentences({"s": sents}, max_sentences=10, seed=3).sentences
    b = filter_sentences({"s": sents}, max_sentences=10, seed=3).sentences
    c = filter_sentences({"s": sents}, max_sentences=10, seed=4).sentences
    assert a == b and a != c and a == sorted(a) and len(a) == 10


def test_normalise():
    assert normalise("  a\t b \n c ") == "a b c"


@pytest.fixture
def data_dir(tmp_path):
    """Hand-made files in the shared-data layout (not the real data)."""
    sts = tmp_path / "stsbenchmark"
    sts.mkdir()
    rows = {
        "train": [
            "main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane is taking off now.\tAn air plane is taking off now.",
            'main-news\theadlines\t2013\t0002\t1.500\tHe said "no" twice to them.\t'
            "She said yes once to him today.\tsrc1\tsrc2",
        ],
        "dev": ["main-forums\tx\t2014\t0003\t3.200\tA dev sentence for checking.\tAnother dev sentence for checking."],
        "test": [
            "main-forums\tx\t2015\t0004\t0.400\tThe test sentence that leaks here.\tA second test sentence right here."
        ],
    }
    for split, lines in rows.items():
        (sts / f"sts-{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    nli = tmp_path / "nli" / "snli_dev"
    nli.mkdir(parents=True)
    with open(nli / "dev.jsonl", "w") as fh:
        for p, h, l in [
            ("A man plays a guitar on stage tonight.", "A person makes music for a crowd.", "entailment"),
            ("The test sentence that leaks here.", "Nothing leaks from this one here.", "neutral"),
        ]:
            fh.write(json.dumps({"premise": p, "hypothesis": h, "label": l}) + "\n")
    mrpc = tmp_path / "mrpc"
    mrpc.mkdir()
    head = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n"
    (mrpc / "msr_paraphrase_train.txt").write_text(
        head + "1\t1\t2\tThe company said profits rose.\tProfits rose, the company said.\r\n", encoding="utf-8"
    )
    (mrpc / "msr_paraphrase_test.txt").write_text(head, encoding="utf-8")
    beir = tmp_path / "beir" / "toy"
    demo_retrieval(n_docs=20, n_queries=5).save(beir)
    return tmp_path


def test_stsb_local_parser_quote_none_and_extra_columns(data_dir):
    df = read_stsb_file(data_dir / "stsbenchmark/sts-train.csv")
    assert len(df) == 2
    assert df.loc[1, "sentence1"] == 'He said "no" twice to them.'
    assert df["score"].tolist() == [5.0, 1.5]
    all_ = stsb_pairs("local:stsb", data_dir)
    assert all_.groupby("split").size().to_dict() == {"dev": 1, "test": 1, "train": 2}


def test_local_sources_and_leakage(data_dir, tmp_path):
    assert "The company said profits rose." in training_sentences("local:mrpc", data_dir)
    cfg = DataConfig(
        train_sources=["local:nli", "local:mrpc", "local:stsb"],
        stsb="local:stsb",
        retrieval=["local:toy"],
        nli="local:nli",
        data_dir=str(data_dir),
    )
    out = tmp_path / "out"
    stats = prepare_data(cfg, out)
    sents = pd.read_parquet(out / "sentences.parquet")["sentence"].tolist()
    assert "The test sentence that leaks here." not in sents
    assert "A man plays a guitar on stage tonight." in sents
    assert stats["leaked_dropped"] == 1 and not stats["synthetic"]
    nli = pd.read_parquet(out / "nli.parquet")
    assert nli["label"].tolist() == [0]  # the leaking pair is dropped
    assert json.loads((out / "stats.json").read_text())["sha256"]


def test_beir_local_loader_feeds_beir_evaluator(data_dir):
    from beir.retrieval.evaluation import EvaluateRetrieval

    ds = retrieval_set("local:toy", data_dir)
    assert len(ds.corpus) == 20 and len(ds.queries) == 5 and set(ds.qrels) == set(ds.queries)
    results = {q: {d: 1.0 for d in docs} for q, docs in ds.qrels.items()}
    ndcg, *_ = EvaluateRetrieval.evaluate(ds.qrels, results, [1, 10])
    assert ndcg["NDCG@1"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "cfg, needle",
    [
        (DataConfig(train_sources=["local:nli"], stsb=None), "data_dir is not set"),
        (DataConfig(train_sources=["local:nli"], stsb=None, data_dir="/no/such/folder"), "does not exist"),
        (DataConfig(train_sources=["local:wiki"], stsb=None, data_dir="."), "local:wiki"),
        (DataConfig(train_sources=["ftp:x"], stsb=None), "unknown kind 'ftp'"),
        (DataConfig(train_sources=["demo:other"], stsb=None), "demo:sentences"),
        (DataConfig(train_sources=["hub:wikipedia"], stsb=None), "unknown hub source 'hub:wikipedia'"),
        (DataConfig(train_sources=["demo:sentences"], qqp="demo:quora"), "unknown demo source 'demo:quora'"),
    ],
)
def test_bad_sources_one_clear_message(tmp_path, cfg, needle):
    with pytest.raises(LeapError, match=needle.replace("(", r"\(")):
        prepare_data(cfg, tmp_path / "o")
    assert not (tmp_path / "o" / "sentences.parquet").exists()


def test_hub_source_offline_names_source(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(LeapError, match="hub:snli.*data_dir"):
        training_sentences("hub:snli")


def test_hub_revisions_pinned_are_used_unpinned_offline_fail_before_work(tmp_path, monkeypatch):
    from leap.workflow.data import hub_repos, resolve_revisions

    refs = ["hub:snli", "hub:qqp", "hub:mrpc", "hub:stsb", "hub:scifact", "local:nli"]
    assert hub_repos(refs) == ["stanfordnlp/snli", "nyu-mll/glue", "sentence-transformers/stsb"]
    pinned = {"stanfordnlp/snli": "a" * 40, "nyu-mll/glue": "b" * 40}
    assert resolve_revisions(["nyu-mll/glue", "stanfordnlp/snli"], pinned) == {
        "nyu-mll/glue": "b" * 40,
        "stanfordnlp/snli": "a" * 40,
    }
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LeapError, match="'sentence-transformers/stsb'.*data_dir"):
        resolve_revisions(["nyu-mll/glue", "sentence-transformers/stsb"], pinned)
    cfg = DataConfig(train_sources=["hub:snli"], stsb="demo:pairs")
    with pytest.raises(LeapError, match="stanfordnlp/snli"):
        prepare_data(cfg, tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing written


def test_demo_qqp_pairs_binary_and_stats_record_no_hub(tmp_path):
    from leap.workflow.data import qqp_pairs

    q = qqp_pairs("demo:qqp")
    assert set(q["score"]) == {0.0, 1.0} and set(q["split"]) == {"test"} and 0.2 < q["score"].mean() < 0.5
    stats = prepare_data(DataConfig(qqp="demo:qqp", demo_size=300), tmp_path / "o")
    assert stats["hub_revisions"] == {} and (tmp_path / "o" / "qqp.parquet").exists()
    sents = set(pd.read_parquet(tmp_path / "o" / "sentences.parquet")["sentence"])
    assert not sents & (set(q["sentence1"]) | set(q["sentence2"]))  # QQP sentences are evaluation data


def test_demo_data_is_varied_graded_and_labelled_synthetic(tmp_path):
    s = demo_sentences(3000)
    assert len(set(s)) > 2500 and all(len(x) > 20 for x in s)
    p = demo_pairs()
    assert set(p["score"]) == {0.0, 1.0, 2.0, 3.0, 4.0, 5.0} and set(p["split"]) == {"dev", "test"}
    r = demo_retrieval()
    assert r.synthetic and all(d in r.corpus for q in r.qrels.values() for d in q)
    r.save(tmp_path / "r")
    assert RetrievalSet.load(tmp_path / "r").synthetic


def test_every_source_kind_answers_the_same_interface_or_says_which_sources_can(tmp_path):
    """One class per source kind behind one interface: a question a kind cannot answer is one
    error naming the sources that can."""
    from leap.workflow.data import DemoSource, HubSource, LocalSource, source

    assert isinstance(source("demo:pairs"), DemoSource)
    assert isinstance(source("local:nli", tmp_path), LocalSource) and isinstance(source("hub:snli"), HubSource)
    assert source("demo:qqp").qqp_pairs(n=50)["score"].isin([0.0, 1.0]).all()
    assert set(source("demo:pairs").nli_pairs()["label"]) <= {0, 1, 2}
    with pytest.raises(LeapError, match="QQP evaluation pairs come from the hub"):
        source("local:stsb", tmp_path).qqp_pairs()
    with pytest.raises(LeapError, match="STS-B pairs come from"):
        source("hub:snli").stsb_pairs()
    with pytest.raises(LeapError, match="unknown kind 'web'"):
        source("web:stsb")
    assert source("hub:stsb").hub_repos() == ["sentence-transformers/stsb"]
    assert source("local:stsb", tmp_path).hub_repos() == [] and source("demo:pairs").hub_repos() == []


def _serve(folder):
    """A local HTTP server over ``folder`` (``with _serve(d) as url``)."""
    import contextlib
    import functools
    import http.server
    import threading

    @contextlib.contextmanager
    def run():
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()

    return run()


def test_beir_download_is_checked_against_its_checksum_before_anything_is_extracted(tmp_path):
    import hashlib
    import zipfile

    from leap.workflow.data.beir_download import download_beir, expected_checksums, published_checksums
    from leap.workflow.data.retry import Retry

    assert published_checksums()["scifact"]["md5"] == "5f7d1de60b170fc8027bb7898e2efca1"
    assert expected_checksums("scifact") == published_checksums()["scifact"]
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "scifact.zip", "w") as z:
        z.writestr("scifact/corpus.jsonl", '{"_id": "d1", "title": "", "text": "a document"}\n')
    md5 = hashlib.md5((served / "scifact.zip").read_bytes()).hexdigest()
    with _serve(served) as url:
        with pytest.raises(LeapError) as err:  # the stand-in's bytes are not BEIR's: refused
            download_beir("scifact", f"{url}/scifact.zip", tmp_path / "dl", retry=Retry(2, 0.0))
        assert f"has md5 {md5}, but 5f7d1de60b170fc8027bb7898e2efca1 is published after 2 attempts" in str(err.value)
        assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == []  # nothing extracted, bad zip gone
        folder = download_beir("scifact", f"{url}/scifact.zip", tmp_path / "dl", {"scifact": f"md5:{md5}"})
        assert (folder / "corpus.jsonl").read_text().startswith('{"_id": "d1"')
    with pytest.raises(LeapError, match="no md5 or sha256 digest"):
        expected_checksums("scifact", {"scifact": "crc:1234"})
    with pytest.raises(LeapError, match="add data.beir_checksums.quora"):
        expected_checksums("quora")
