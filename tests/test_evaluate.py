"""Evaluation functions on hand-computed inputs and tiny models; tables and figures from them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leap.core import common_depth
from leap.core.exit_config import ExitConfig
from leap.errors import LeapError
from leap.serving.model import load_exit_model
from leap.workflow import frontier
from leap.workflow.data import demo_pairs, demo_retrieval
from leap.workflow.evaluate import (
    evaluate_beir,
    evaluate_pairs,
    layer_analysis,
    pair_index,
    spearman,
)
from leap.workflow.exit_heads import entropy_exit, evaluate_exit_heads
from leap.workflow.results import seed_summary


def test_spearman_of_monotone_map_is_one():
    x = np.array([0.1, 0.5, 0.2, 0.9, 0.3])
    assert spearman(x, np.exp(3 * x)) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)


def test_seed_interval_is_a_t_interval_not_the_min_max():
    from scipy import stats

    s = seed_summary([0.70, 0.75, 0.80])
    half = stats.t.ppf(0.975, 2) * np.std([0.70, 0.75, 0.80], ddof=1) / np.sqrt(3)
    assert s["ci_low"] == pytest.approx(0.75 - half) and s["ci_high"] == pytest.approx(0.75 + half)
    assert s["ci_low"] < 0.70 and s["ci_high"] > 0.80  # wider than the seeds' range with 3 seeds
    assert s["values"] == [0.70, 0.75, 0.80] and s["interval"] == "t"
    assert seed_summary([0.7])["ci_low"] is None  # one seed: no interval
    same = seed_summary([0.75, 0.75, 0.75])
    assert same["ci_low"] == same["ci_high"] == pytest.approx(0.75)


def test_entropy_exit_takes_the_first_layer_below_threshold_from_l_min():
    ent = np.array([[0.9, 0.2, 0.9], [0.4, 0.1, 0.9], [0.1, 0.1, 0.9]])  # [L=3, P=3]
    assert entropy_exit(ent, 0.5).tolist() == [2, 1, 3]
    assert entropy_exit(ent, 0.5, min_layer=2).tolist() == [2, 2, 3]


@pytest.fixture(scope="module")
def model(tiny_models):
    return load_exit_model(tiny_models["bert"], exit=ExitConfig(strategy="none"), device="cpu")


def test_pair_scores_equal_the_fast_path(model):
    pairs = demo_pairs(60)
    cfg = ExitConfig(theta=0.9, min_layer=2)
    res = evaluate_pairs(model, pairs, cfg, thetas=(0.9,), pabee=((0.99, 3),))
    test = res["splits"]["test"]
    df = pairs[pairs["split"] == "test"]
    a, _ = model.encode_with_exit_layers(df["sentence1"].tolist(), batch_size=7, exit=cfg)
    b, _ = model.encode_with_exit_layers(df["sentence2"].tolist(), batch_size=7, exit=cfg)
    assert test["spearman_exit"] == pytest.approx(spearman((a * b).sum(-1), df["score"].to_numpy()), abs=1e-6)
    assert test["spearman_full"] == test["spearman_per_layer"][-1]
    assert sum(test["exit_distribution"]) == pytest.approx(1.0)
    lo, hi = test["spearman_exit_pair_ci95"]
    assert lo <= test["spearman_exit"] <= hi
    fr = test["frontier"]
    assert [p["setting"] for p in fr["truncation"]] == [1, 2, 3, 4, 5, 6]
    assert [p["quality"] for p in fr["truncation"]] == pytest.approx(test["spearman_per_layer"])
    assert fr["at_config"]["quality"] == pytest.approx(test["spearman_exit"])
    assert [p["rule"] for p in fr["sweep"]] == ["convergence", "pabee", "common_depth"] + ["oracle"] * len(
        frontier.ORACLE_SWEEP
    )
    common = fr["sweep"][2]  # the same exits as the convergence point, pairs met at their common depth
    sents, i1, i2 = pair_index(df)
    stack, layers = model.encode_with_layer_stack(sents, batch_size=7, exit=cfg)
    want = spearman(common_depth.pair_similarity(stack, layers, i1, i2), df["score"].to_numpy())
    assert common["exit_rate"] == fr["sweep"][0]["exit_rate"] and common["quality"] == pytest.approx(want, abs=1e-6)


def test_layer_analysis_keys_and_threshold_sweep(model):
    res = layer_analysis(model, demo_pairs(40)["sentence1"].tolist(), ExitConfig(min_layer=2), thetas=(-1.0, 1.0))
    assert res["similarity_to_final"][-1] == pytest.approx(1.0)
    assert res["nn_at_10"][-1] == pytest.approx(1.0) and res["nn_failure_rate"][-1] == 0.0
    assert res["stability"][0] is None and len(res["anisotropy"]) == 6
    everyone, nobody = res["theta_sweep"]
    assert everyone["exit_rate"] == 1.0 and everyone["expected_exit_layer"] == 2.0
    assert nobody["exit_rate"] == 0.0 and nobody["nn_at_10"] == pytest.approx(1.0) and nobody["nn10_failure"] == 0.0


def test_beir_ndcg_matches_beir_own_search(tiny_models, model):
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.models import SentenceBERT
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    ds = demo_retrieval(n_docs=40, n_queries=8, n_dev=4)
    ours = evaluate_beir(model, ds, ExitConfig(min_layer=2), thetas=(0.9,), pabee=())
    search = DenseRetrievalExactSearch(SentenceBERT(tiny_models["bert"]), batch_size=16)
    retriever = EvaluateRetrieval(search, score_function="cos_sim", k_values=[1, 3, 5, 10])
    ndcg, *_ = retriever.evaluate(ds.qrels, retriever.retrieve(ds.corpus, ds.queries), [1, 3, 5, 10])
    for k in ("NDCG@1", "NDCG@10"):
        assert ours["full"][k] == pytest.approx(ndcg[k], abs=1e-4)
    assert sum(ours["exit"]["corpus_exit"]["exit_distribution"]) == pytest.approx(1.0)
    assert ours["frontier"]["truncation"][-1]["quality"] == pytest.approx(ours["full"]["NDCG@10"], abs=1e-9)
    # common depth: each query meets each document at min(l_q, l_d), from the served stacks
    common = next(p for p in ours["frontier"]["sweep"] if p["rule"] == "common_depth")
    cfg = ExitConfig(theta=0.9, min_layer=2)
    qids, dids = list(ds.queries), list(ds.corpus)
    docs = [(ds.corpus[d].get("title", "") + " " + ds.corpus[d]["text"]).strip() for d in dids]
    sq, lq = model.encode_with_layer_stack([ds.queries[q] for q in qids], exit=cfg)
    sd, ld = model.encode_with_layer_stack(docs, exit=cfg)
    sims = common_depth.similarity(sq, lq, sd, ld)
    top = {q: {dids[j]: float(sims[i, j]) for j in np.argsort(-sims[i])[:11]} for i, q in enumerate(qids)}
    want, *_ = EvaluateRetrieval.evaluate(ds.qrels, top, [10], ignore_identical_ids=True)
    assert common["quality"] == pytest.approx(want["NDCG@10"], abs=1e-4)


def test_query_only_retrieval_equals_a_full_depth_index_searched_by_exited_queries(model):
    """Query-only setting: documents encoded once at full depth (the index), queries under the
    rule; its truncation comparator cuts only the queries. Checked against a direct search."""
    from beir.retrieval.evaluation import EvaluateRetrieval

    ds = demo_retrieval(n_docs=40, n_queries=8, n_dev=4)
    cfg = ExitConfig(theta=0.9, min_layer=2)
    ours = evaluate_beir(model, ds, cfg, thetas=(0.9,), pabee=())
    qids, dids = list(ds.queries), list(ds.corpus)
    docs = [(ds.corpus[d].get("title", "") + " " + ds.corpus[d]["text"]).strip() for d in dids]
    index = model.encode(docs, exit=ExitConfig(strategy="none"))

    def ndcg10(q_emb: np.ndarray) -> float:
        sims = q_emb @ index.T
        top = {q: {dids[j]: float(sims[i, j]) for j in np.argsort(-sims[i])[:11]} for i, q in enumerate(qids)}
        return EvaluateRetrieval.evaluate(ds.qrels, top, [10], ignore_identical_ids=True)[0]["NDCG@10"]

    queries = [ds.queries[q] for q in qids]
    q_exit, q_layers = model.encode_with_exit_layers(queries, exit=cfg)
    assert ours["exit_query_only"]["NDCG@10"] == pytest.approx(ndcg10(q_exit), abs=1e-4)
    assert ours["exit_query_only"]["expected_exit_layer"] == pytest.approx(q_layers.mean())
    qo = ours["frontier_query_only"]
    cut, _ = model.encode_with_exit_layers(queries, exit=ExitConfig(strategy="truncate", min_layer=2))
    assert qo["truncation"][1]["quality"] == pytest.approx(ndcg10(cut), abs=1e-4)
    assert qo["truncation"][-1]["quality"] == pytest.approx(ours["full"]["NDCG@10"], abs=1e-6)
    assert qo["at_config"]["quality"] == pytest.approx(ndcg10(q_exit), abs=1e-4)
    assert {p["rule"] for p in qo["sweep"]} == {"convergence", "oracle"}
    assert ours["dev"]["queries"] == 4 and "frontier_query_only" in ours["dev"]
    mix = ours["layer_mixing"]
    assert mix["final"] == pytest.approx(ours["full"]["NDCG@10"], abs=1e-6)  # the model has no maps
    assert mix["contrast"]["layer"] in range(1, model.num_layers)


def test_layer_mixing_on_pairs_scores_each_mix_and_the_dev_chosen_contrast(model):
    from leap.workflow import layer_mixing

    pairs = demo_pairs(60)
    res = evaluate_pairs(model, pairs, ExitConfig(min_layer=2), thetas=(0.9,), pabee=())
    mix = res["layer_mixing"]
    assert mix["final"] == pytest.approx(res["splits"]["test"]["spearman_full"], abs=1e-6)
    assert set(mix) == {"final", "first_last", "mean_last2", "mean_last3", "contrast"}
    # the chosen contrast is the best on dev of every (alpha, layer), re-scored here directly
    dev = pairs[pairs["split"] == "dev"]
    sents, i1, i2 = pair_index(dev)
    v = model.layer_embeddings(sents).numpy()
    q = frontier.pair_spearman(i1, i2, dev["score"].to_numpy(float))
    grid = {(a, l): q(layer_mixing.contrast(v, a, l)) for a in layer_mixing.CONTRAST_ALPHAS for l in range(1, 6)}
    best = max(grid, key=grid.get)
    assert (mix["contrast"]["alpha"], mix["contrast"]["layer"]) == best
    assert mix["contrast"]["dev_quality"] == pytest.approx(grid[best])


def test_layer_mixes_are_the_means_they_name():
    from leap.workflow.layer_mixing import contrast, mixes

    v = np.random.default_rng(0).normal(size=(4, 5, 3))
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    m = mixes(v)
    assert np.allclose(m["final"], unit(v[3]), atol=1e-6)
    assert np.allclose(m["mean_last2"], unit(v[2] + v[3]), atol=1e-6)
    assert np.allclose(m["mean_last3"], unit(v[1] + v[2] + v[3]), atol=1e-6)
    assert np.allclose(m["first_last"], unit(v[0] + v[3]), atol=1e-6)
    assert np.allclose(contrast(v, 0.5, 2), unit(v[3] + 0.5 * (v[3] - v[1])), atol=1e-6)


def test_deebert_heads_exit_at_the_calibrated_depth(model):
    """The entropy threshold is chosen on dev so that the pairs leave, on average, near the
    target layer: the heads exit (unlike a threshold matched to a model that never exits)."""
    pairs = demo_pairs(200)
    nli = pairs.assign(label=(pairs["score"] * 2.99).astype(int).clip(0, 2)).head(150)
    res = evaluate_exit_heads(model, nli, pairs, target_mean_layer=4.0, min_layer=2)
    assert res["dev"]["exit_rate"] > 0 and abs(res["dev"]["expected_exit_layer"] - 4.0) < 1.0
    fallback = evaluate_exit_heads(model, nli, pairs, target_mean_layer=6.0, min_layer=2)  # a reference without exits
    assert fallback["target_mean_layer"] == 4.0 and fallback["test"]["exit_rate"] > 0
    assert len(res["frontier"]["sweep"]) == 12 and res["decision"].startswith("per pair")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model):
    """Evaluation JSONs of a tiny 'baseline', 'leap' and 'leap_xd' (two seeds) in the results layout."""
    root = tmp_path_factory.mktemp("results")
    pairs = demo_pairs(80)
    paths = []
    for v, theta in (("baseline", 1.0), ("leap", 0.9), ("leap_xd", -1.0)):
        for seed in (0, 1):
            res = evaluate_pairs(model, pairs, ExitConfig(theta=theta, min_layer=2), thetas=(0.8, 0.9), pabee=())
            res["splits"]["test"]["spearman_exit"] += 0.01 * seed
            p = root / v / f"seed{seed}" / "eval" / "stsb.json"
            p.parent.mkdir(parents=True)
            p.write_text(json.dumps(res))
            paths.append(p)
    return root, paths


def test_tables_from_eval_jsons(tmp_path, run_dir):
    from leap.workflow.tables import build_tables

    _, paths = run_dir
    status = build_tables(paths, tmp_path / "tables")
    assert status["table1_main"] == "written" and status["table3_layerwise"].startswith("skipped")
    t1 = pd.read_csv(tmp_path / "tables/table1_main.csv")
    assert t1["Model"].tolist() == ["baseline", "leap", "leap_xd"]  # an extra exit objective right after LEAP
    assert t1["Exit rate"].iloc[0] == 0.0 and t1["Exit rate"].iloc[2] == 1.0
    assert "[" in t1["STS-B (exit)"].iloc[1] and len(t1["STS-B (exit), seeds"].iloc[1].split(" / ")) == 2
    md = (tmp_path / "tables/table1_main.md").read_text()
    assert md.startswith("| Model") and "nan" not in md and "None" not in md  # no latency run: cell left empty
    t5 = pd.read_csv(tmp_path / "tables/table5_pareto.csv")
    assert t5["theta"].tolist() == [0.8, 0.9] and "Exit advantage" in t5


def test_frontier_tables_and_figures(tmp_path, run_dir):
    from leap.workflow.figures import build_frontier_figures
    from leap.workflow.frontier_tables import build_frontier_tables

    _, paths = run_dir
    assert build_frontier_tables(paths, tmp_path / "tables") == {"frontier": "written", "frontier_summary": "written"}
    f = pd.read_csv(tmp_path / "tables/frontier.csv")
    cols = [
        "model",
        "benchmark",
        "theta",
        "exit_rate",
        "mean_exit_layer",
        "layer_reduction",
        "quality",
        "truncation_quality_at_same_depth",
        "exit_advantage",
    ]
    assert set(cols) <= set(f.columns)
    xd = f[(f["model"] == "leap_xd") & f["at_config"]].iloc[0]
    # theta -1 exits every sentence at l_min: the point IS truncation at layer 2, advantage 0
    assert xd["mean_exit_layer"] == 2.0 and xd["exit_advantage"] == pytest.approx(0.0, abs=1e-9)
    s = pd.read_csv(tmp_path / "tables/frontier_summary.csv").set_index("model")
    assert s.loc["baseline", "exit_rate_at_config"] == 0.0
    figs = build_frontier_figures(paths, tmp_path / "figures")
    assert figs == {"fig3_frontier_sts_b": "written"}
    assert (tmp_path / "figures/fig3_frontier_sts_b.png").stat().st_size > 10_000


def test_frontier_table_shows_a_calibrated_threshold_to_three_decimals(tmp_path, run_dir):
    from leap.workflow.frontier_tables import build_frontier_tables

    _, paths = run_dir
    res = json.loads(paths[0].read_text())
    res["splits"]["test"]["frontier"]["sweep"][0]["setting"] = 0.506856678724289  # an entropy fitted on dev
    p = tmp_path / "results" / "deebert" / "seed0" / "eval" / "stsb.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(res))
    build_frontier_tables([p], tmp_path / "tables")
    f = pd.read_csv(tmp_path / "tables/frontier.csv", dtype={"theta": str})
    assert "0.507" in f["theta"].tolist() and "0.506856678724289" not in f["theta"].tolist()
    assert "0.9" in f["theta"].tolist()  # thetas as they are


def test_tables_figures_claims_skip_missing(tmp_path):
    from leap.workflow.claims import build_claims, load_claims
    from leap.workflow.figures import build_figures
    from leap.workflow.report import write_report
    from leap.workflow.results import FIGURE_NAMES, TABLE_NAMES
    from leap.workflow.tables import build_tables

    status = build_tables([], tmp_path / "tables")
    assert all(v.startswith("skipped") for v in status.values()) and set(status) == set(TABLE_NAMES)
    for name in TABLE_NAMES:  # every table exists (the report lists it) and says it was not run
        assert pd.read_csv(tmp_path / f"tables/{name}.csv")["note"][0].startswith("not run in this configuration")
    figs = build_figures([], tmp_path / "figures")
    assert all(v.startswith("skipped") for v in figs.values()) and set(figs) == set(FIGURE_NAMES)
    assert all((tmp_path / f"figures/{n}.png").exists() for n in FIGURE_NAMES)
    claims = build_claims([])
    assert len(claims) == len(load_claims()) and set(claims["verdict"]) == {"not measured"}
    assert claims["reason"].str.len().min() > 0
    write_report(tmp_path / "report.md", claims, tmp_path / "tables", tmp_path / "figures", True, "x")
    head = (tmp_path / "report.md").read_text().splitlines()[:4]
    assert any("Synthetic data" in l and "not comparable to the paper" in l for l in head)


def _stsb_json(rate: float) -> dict:
    return {
        "num_layers": 2,
        "splits": {
            "test": {
                "spearman_exit": 0.7,
                "spearman_full": 0.72,
                "exit_rate": rate,
                "expected_exit_layer": 2 - rate,
                "layer_reduction": 2 / (2 - rate),
            }
        },
    }


def test_table11_full_leap_row_from_leap_runs_when_abl_exit_not_trained():
    from leap.workflow.tables import table11_ablation

    res = {
        "abl_final": {0: {"stsb": _stsb_json(0.0)}},
        "leap": {0: {"stsb": _stsb_json(0.5)}, 1: {"stsb": _stsb_json(0.3)}},
    }
    t = table11_ablation(res)
    assert t["Configuration"].tolist() == ["L_final", "+ L_exit (full LEAP)"]
    assert t["Variant"].tolist() == ["abl_final", "leap"] and t["Exit rate"].iloc[1] == 0.4
    res["abl_exit"] = {0: {"stsb": _stsb_json(0.9)}}  # trained separately: its own runs are used
    assert table11_ablation(res)["Variant"].tolist() == ["abl_final", "abl_exit"]


def test_table11_row_three_says_it_is_the_baseline():
    from leap.workflow.tables import table11_ablation

    t = table11_ablation({"abl_contrast": {0: {"stsb": _stsb_json(0.0)}}})
    assert t["Configuration"].tolist() == ["+ L_contrast (= the baseline)"]


def test_frontier_figure_marks_the_fixed_depth_student_once_and_names_each_model_once():
    import matplotlib

    matplotlib.use("Agg")
    from leap.workflow.figures import frontier_figure

    def row(model, rule, theta, red, q, at=False):
        return {
            "model": model,
            "benchmark": "STS-B",
            "rule": rule,
            "theta": theta,
            "at_config": at,
            "exit_rate": 1.0,
            "mean_exit_layer": 6 / red,
            "layer_reduction": red,
            "quality": q,
            "speedup_b1": None,
            "speedup_b32": None,
        }

    df = pd.DataFrame(
        [
            row("a", "truncation", 3, 2.0, 0.7),
            row("a", "truncation", 6, 1.0, 0.8),
            row("a", "convergence", 0.9, 1.5, 0.72),
            row("a", "convergence", 0.95, 1.1, 0.79, at=True),
            row("fixed_depth", "fixed_depth", 4, 1.5, 0.76, at=True),
            row("fixed_depth", "truncation", 2, 2.0, 0.6),  # its own frontier: not the student's point
            row("fixed_depth", "convergence", 0.9, 1.2, 0.7),
        ]
    )
    fig = frontier_figure(df, "STS-B")
    stars = [c for c in fig.axes[0].collections if list(c.get_sizes()) == [160]]
    assert len(stars) == 1 and stars[0].get_offsets().tolist() == [[1.5, 0.76]]
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["a"]  # one panel per model; the fixed-depth student is a point, not a panel
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "fixed-depth student" in labels and "truncation at layer l" in labels
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][:2] == ["1x", "1.5x"]
    # the serving-paths stage's measurements: a speed panel per timed model, ms on x
    paths = [
        {"backend": b, "kind": k, "ms_b1": ms, "spearman": sp}
        for b, k, ms, sp in [
            ("torch", "full", 8.0, 0.80),
            ("torch", "cut", 4.0, 0.70),
            ("onnx-int8", "full", 1.2, 0.79),
            ("onnx-int8", "exit", 1.0, 0.75),
        ]
    ]
    rec = {"benchmark": "STS-B dev", "n_pairs": 50, "batch_sizes": [1], "paths": paths}
    fig = frontier_figure(df, "STS-B", {"a": rec})
    speed = [ax for ax in fig.axes if ax.get_visible() and "STS-B dev" in ax.get_title()]
    assert len(speed) == 1
    xs = sorted(x for line in speed[0].get_lines() for x in line.get_xdata())
    assert xs == [1.0, 1.2, 4.0, 8.0]


def test_beir_from_shared_layer_vectors_equals_encoding_it_and_other_texts_are_refused(tmp_path, tiny_models):
    """A checkpoint evaluated as published and with fitted maps reads one pass of layer vectors
    (rule published_vectors): the record equals the one that encodes for itself, but the time."""
    from safetensors import safe_open

    from leap.deploy.convert import exit_enable_with_maps
    from leap.workflow.evaluate import run_beir
    from leap.workflow.layer_vectors import run_layer_vectors

    demo_retrieval(n_docs=40, n_queries=8, n_dev=4).save(tmp_path / "set")
    exit = ExitConfig(theta=0.9, min_layer=2).to_dict()
    maps = str(tmp_path / "maps")
    exit_enable_with_maps(tiny_models["bert"], maps, list(demo_pairs(60)["sentence1"]), 60, exit=exit)
    vectors = tmp_path / "vectors/beir_set.safetensors"
    run_layer_vectors(tiny_models["bert"], tmp_path / "set", vectors, batch_size=16, max_seq_length=24)  # as published
    own = run_beir(maps, tmp_path / "set", tmp_path / "own.json", exit, 16, max_seq_length=24)
    shared = run_beir(maps, tmp_path / "set", tmp_path / "shared.json", exit, 16, max_seq_length=24, vectors=vectors)
    assert own["layer_maps"] is True
    seconds = float(safe_open(str(vectors), framework="pt").metadata()["seconds"])
    assert shared.pop("encode_seconds") == seconds and own.pop("encode_seconds") != seconds  # read, not encoded
    assert shared == own
    assert not list(vectors.parent.glob(".*"))  # written atomically: no temp file left
    with pytest.raises(LeapError, match="other texts or another token cap.*delete it and rerun") as err:
        run_beir(maps, tmp_path / "set", tmp_path / "x.json", exit, 16, max_seq_length=16, vectors=vectors)
    assert "\n" not in str(err.value) and not (tmp_path / "x.json").exists()
