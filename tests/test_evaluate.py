"""Evaluation functions on hand-computed inputs and tiny models; tables, figures, claims."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leap.data import demo_pairs, demo_retrieval
from leap.early_exit import EarlyExitEncoder, ExitConfig
from leap.evaluate import entropy_exit, evaluate_beir, evaluate_stsb, layer_analysis, seed_summary, spearman


def test_spearman_of_monotone_map_is_one():
    x = np.array([0.1, 0.5, 0.2, 0.9, 0.3])
    assert spearman(x, np.exp(3 * x)) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)


def test_bootstrap_ci_of_identical_seeds_has_zero_width():
    s = seed_summary([0.75, 0.75, 0.75])
    assert s["mean"] == s["ci_low"] == s["ci_high"] == pytest.approx(0.75)
    w = seed_summary([0.70, 0.75, 0.80])
    assert w["ci_low"] < 0.75 < w["ci_high"]


def test_entropy_exit_first_layer_below_threshold():
    ent = np.array([[0.9, 0.2, 0.9], [0.4, 0.1, 0.9], [0.1, 0.1, 0.9]])  # [L=3, P=3]
    assert entropy_exit(ent, 0.5).tolist() == [2, 1, 3]


@pytest.fixture(scope="module")
def enc(tiny_models):
    return EarlyExitEncoder.from_pretrained(tiny_models["bert"], exit=ExitConfig(strategy="none"), device="cpu")


def test_stsb_exit_score_equals_fast_path(enc):
    pairs = demo_pairs(60)
    cfg = ExitConfig(theta=0.9, min_layer=2)
    res = evaluate_stsb(enc, pairs, cfg, thetas=(0.9,))
    test = res["splits"]["test"]
    df = pairs[pairs["split"] == "test"]
    enc.exit = cfg
    a = enc.encode(df["sentence1"].tolist(), batch_size=7)
    b = enc.encode(df["sentence2"].tolist(), batch_size=7)
    fast = spearman((a * b).sum(-1), df["score"].to_numpy())
    assert test["spearman_exit"] == pytest.approx(fast, abs=1e-6)
    assert test["theta_sweep"][0]["spearman"] == pytest.approx(test["spearman_exit"])
    assert test["spearman_full"] == test["spearman_per_layer"][-1]
    assert sum(test["exit_distribution"]) == pytest.approx(1.0)
    enc.exit = ExitConfig(strategy="none")


def test_layer_analysis_keys(enc):
    res = layer_analysis(enc, demo_pairs(40)["sentence1"].tolist(), ExitConfig(min_layer=2))
    assert res["similarity_to_final"][-1] == pytest.approx(1.0)
    assert res["nn_at_10"][-1] == pytest.approx(1.0) and res["nn_failure_rate"][-1] == 0.0
    assert res["stability"][0] is None and len(res["anisotropy"]) == 6


def test_beir_ndcg_matches_beir_own_model(tiny_models, enc):
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.models import SentenceBERT
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    ds = demo_retrieval(n_docs=40, n_queries=8)
    ours = evaluate_beir(enc, ds, ExitConfig(min_layer=2))
    search = DenseRetrievalExactSearch(SentenceBERT(tiny_models["bert"]), batch_size=16)
    retriever = EvaluateRetrieval(search, score_function="cos_sim", k_values=[1, 3, 5, 10])
    ndcg, *_ = retriever.evaluate(ds.qrels, retriever.retrieve(ds.corpus, ds.queries), [1, 3, 5, 10])
    for k in ("NDCG@1", "NDCG@10"):
        assert ours["full"][k] == pytest.approx(ndcg[k], abs=1e-4)
    assert sum(ours["exit"]["corpus_exit"]["exit_distribution"]) == pytest.approx(1.0)


def test_tables_figures_claims_skip_missing(tmp_path):
    from leap.figures import build_figures
    from leap.report import CLAIMS, build_claims, write_report
    from leap.tables import build_tables

    status = build_tables([], tmp_path / "tables", log=lambda s: None)
    assert all(v.startswith("skipped") for v in status.values()) and len(status) == 16
    assert not list((tmp_path / "tables").glob("*.csv"))
    figs = build_figures([], tmp_path / "figures", log=lambda s: None)
    assert all(v.startswith("skipped") for v in figs.values())
    claims = build_claims([])
    assert len(claims) == len(CLAIMS) and set(claims["verdict"]) == {"not measured"}
    assert claims["note"].str.len().min() > 0
    write_report(tmp_path / "report.md", claims, tmp_path / "tables", tmp_path / "figures", True, "x")
    head = (tmp_path / "report.md").read_text().splitlines()[:4]
    assert any("Synthetic data" in l and "not comparable to the paper" in l for l in head)


def test_tables_from_eval_jsons(tmp_path):
    from leap.tables import build_tables

    def stsb(rate, el):
        split = {"spearman_exit": 0.7, "spearman_full": 0.72, "spearman_per_layer": [0.5, 0.72], "exit_rate": rate,
                 "exit_distribution": [rate, 1 - rate], "cumulative_exit": [rate, 1.0], "expected_exit_layer": el,
                 "layer_reduction": 2 / el, "theta_sweep": [{"theta": 0.95, "spearman": 0.7, "exit_rate": rate,
                                                               "expected_exit_layer": el, "layer_reduction": 2 / el}],
                 "pabee": {"spearman": 0.69, "exit_rate": 0.0, "layer_reduction": 1.0}}
        return {"num_layers": 2, "splits": {"test": split}}

    paths = []
    for v, rate in (("baseline", 0.0), ("leap", 0.5), ("leap_fix", 0.8)):
        for seed in (0, 1):
            p = tmp_path / v / f"seed{seed}" / "eval" / "stsb.json"
            p.parent.mkdir(parents=True)
            p.write_text(json.dumps(stsb(rate, 2 - rate)))
            paths.append(p)
    status = build_tables(paths, tmp_path / "tables", log=lambda s: None)
    assert status["table1_main"] == "written" and status["table3_layerwise"].startswith("skipped")
    t1 = pd.read_csv(tmp_path / "tables/table1_main.csv")
    # an extra exit objective (not a paper row) is reported right after LEAP
    assert t1["Model"].tolist() == ["baseline", "leap", "leap_fix"] and t1["Exit rate"].tolist() == [0.0, 0.5, 0.8]
    assert t1["STS-B (exit)"].iloc[1] == "0.700 [0.700, 0.700]"
    md = (tmp_path / "tables/table1_main.md").read_text()
    assert md.startswith("| Model |") and "nan" not in md and "None" not in md  # no latency run: cell left empty

    from leap.report import build_claims

    claims = build_claims(paths).set_index("claim")
    rate = "baseline exit rate"
    assert claims.loc[rate, "measured"] == 0.0 and pd.isna(claims.loc[rate, "measured (leap_fix)"])  # not a LEAP claim
    el = "expected exit layer / layer reduction"
    assert claims.loc[el, "measured"] == "1.50 / 1.33x" and claims.loc[el, "measured (leap_fix)"] == "1.20 / 1.67x"


def test_table11_full_leap_row_from_leap_runs_when_abl_exit_not_trained():
    from leap.tables import table11_ablation

    def stsb(rate):
        return {"num_layers": 2, "splits": {"test": {"spearman_exit": 0.7, "spearman_full": 0.72, "exit_rate": rate,
                                                      "expected_exit_layer": 2 - rate, "layer_reduction": 2 / (2 - rate)}}}

    res = {"abl_final": {0: {"stsb": stsb(0.0)}}, "leap": {0: {"stsb": stsb(0.5)}, 1: {"stsb": stsb(0.3)}}}
    t = table11_ablation(res)
    assert t["Configuration"].tolist() == ["L_final", "+ L_exit (full LEAP)"]
    assert t["Variant"].tolist() == ["abl_final", "leap"] and t["Exit rate"].iloc[1] == 0.4
    res["abl_exit"] = {0: {"stsb": stsb(0.9)}}  # trained separately: its own runs are used
    t = table11_ablation(res)
    assert t["Variant"].tolist() == ["abl_final", "abl_exit"] and t["Exit rate"].iloc[1] == 0.9
