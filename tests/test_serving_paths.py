"""`leap calibrate --paths auto`: every serving path (torch / ONNX Runtime, fp32 / int8, full
depth, cuts, exit) measured on the user's data, the fastest within the budget written into the
folder, and loading the folder serving that path."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e .[onnx]")

from leap.core.builtin import builtin_sentences  # noqa: E402
from leap.core.exit_config import ExitConfig, read_serving  # noqa: E402
from leap.deploy.calibrate import Budget, agreement  # noqa: E402
from leap.deploy.convert import convert  # noqa: E402
from leap.deploy.path_choice import PairResamples, choose, in_budget, mean_interval  # noqa: E402
from leap.deploy.serving_paths import TABLE_FILE, PathResult, calibrate_paths, candidate_rules  # noqa: E402
from leap.errors import LeapError  # noqa: E402
from leap.serving.model import ExitSentenceTransformer, load_exit_model  # noqa: E402

FAST = {"thetas": (0.5, 0.9), "batch_sizes": (1, 4), "timing_sentences": 8, "rounds": 1, "threads": 1}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_models):
    """A tiny exit-enabled BERT with maps, calibrated with --paths auto (ONNX exported on the way)."""
    root = tmp_path_factory.mktemp("paths")
    sents = builtin_sentences()[:60]
    folder = convert(tiny_models["bert"], root / "m", exit=ExitConfig(theta=0.9, min_layer=3), fit_maps_on=sents)
    res = calibrate_paths(folder, sents, Budget(nn10=0.9), source="dev.txt", **FAST)
    return folder, sents, res


def test_every_path_is_measured_and_the_fastest_within_budget_is_chosen(calibrated):
    folder, _, res = calibrated
    L = 6
    # 5 engines (torch; ONNX Runtime plain and fused, fp32 and int8) x (full, 5 cuts, 4 exits)
    assert len(res.paths) == 5 * len(candidate_rules(L, FAST["thetas"], [3, 4]))
    assert {p.backend for p in res.paths} == {"torch", "onnx", "onnx-int8", "onnx-fused", "onnx-fused-int8"}
    assert {p.precision for p in res.paths if "int8" in p.backend} == {"int8"}
    assert all(set(p.ms) == {1, 4} and min(p.ms.values()) > 0 for p in res.paths)
    # in budget on the lower end of the NN@10 interval, which brackets the point estimate
    assert all(p.nn10_ci[0] <= p.nn10 <= p.nn10_ci[1] for p in res.paths)
    assert [p.meets_budget for p in res.paths] == [p.nn10_ci[0] >= 0.9 for p in res.paths]
    eligible = [p for p in res.paths if p.meets_budget and (p.kind != "exit" or p.exit_rate > 0)]
    fastest = min(eligible, key=lambda p: p.ms[1])
    assert all(lo <= p.ms[b] <= hi for p in res.paths for b, (lo, hi) in p.ms_range.items())
    assert res.chosen in eligible and res.chosen.ms_range[1][0] <= fastest.ms_range[1][1]  # tied with the fastest
    full = next(p for p in res.paths if p.backend == "torch" and p.kind == "full")
    assert full.nn10 == 1.0 and full.nn10_ci == (1.0, 1.0) and full.exit_rate == 0.0  # the reference itself
    table = (folder / TABLE_FILE).read_text()
    assert (
        res.chosen.name in table and len(table.splitlines()) == len(res.paths) + 5
    )  # budget, choice, blank, header, rule
    served = [line for line in table.splitlines()[3:] if line.rstrip().endswith(" served")]
    assert (
        len(served) == 1
        and served[0].strip().startswith(res.chosen.name)
        and f"[{res.chosen.nn10_ci[0]:.3f}, " in served[0]
    )


def test_the_calibrated_path_is_served_on_request_and_the_default_stays_torch(calibrated):
    """`backend="calibrated"` serves the chosen engine, precision, threads and rule; without it
    the folder loads on torch with the chosen rule: the type and engine never depend on the file."""
    from sentence_transformers import SentenceTransformer

    folder, sents, res = calibrated
    rec = read_serving(folder)
    assert (rec["backend"], rec["precision"]) == (res.chosen.backend, res.chosen.precision)
    assert rec["data"] == "dev.txt" and len(rec["data_sha256"]) == 64 and rec["machine"]["device"] == "cpu"
    assert len(rec["paths"]) == len(res.paths)
    served = ExitSentenceTransformer(str(folder), backend="calibrated")
    plain = ExitSentenceTransformer(str(folder))
    for model in (served, plain):
        assert isinstance(model, SentenceTransformer) and model.exit_config == res.chosen.rule.resolve(6)
    assert served.backend == res.chosen.backend and served.threads == rec["threads"] and plain.backend == "torch"
    assert repr(served).splitlines()[0] == f"ExitSentenceTransformer(serving: {served.serving_path})"
    fused = " fused" if "fused" in res.chosen.backend else ""
    engine = "torch" if res.chosen.backend == "torch" else f"ONNX Runtime{fused} {res.chosen.precision}"
    assert served.serving_path.startswith(engine)


def test_asking_for_the_calibrated_path_of_an_uncalibrated_folder_is_one_error(tmp_path, tiny_models):
    folder = convert(tiny_models["bert"], tmp_path / "m")
    with pytest.raises(LeapError, match="no calibrated serving path; run `leap calibrate"):
        ExitSentenceTransformer(str(folder), backend="calibrated")


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_a_paths_measured_quality_is_what_encoding_through_that_path_gives(calibrated, backend):
    """The table is scored from one full pass per engine; encoding through each path agrees."""
    folder, sents, res = calibrated
    ref = load_exit_model(str(folder), backend="torch").encode(sents, exit=ExitConfig(strategy="none"))
    model = load_exit_model(str(folder), backend=backend, threads=1)
    for p in [q for q in res.paths if q.backend == backend][::3]:
        emb, layers = model.encode_with_exit_layers(sents, exit=p.rule)
        nn, cos = agreement(emb, ref)
        assert abs(nn - p.nn10) < 0.02 and abs(cos - p.mean_cosine) < 1e-3, p.name
        assert abs(float(np.mean(layers)) - p.expected_exit_layer) < 0.1, p.name


def test_cli_calibrate_auto_with_pairs_reports_every_path_and_encode_serves_it(tmp_path, tiny_models, capsys):
    from leap.cli import main

    sents = builtin_sentences()[:40]
    folder = convert(tiny_models["mpnet"], tmp_path / "m", exit=ExitConfig(theta=0.9, min_layer=3))
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("\n".join(f"{a}\t{b}\t{i % 5}" for i, (a, b) in enumerate(zip(sents, sents[1:]))) + "\n")
    base = ["calibrate", str(folder), "--data", str(pairs), "--pairs", "--spearman-drop", "0.05", "--paths", "auto"]
    fast = ["--thetas", "0.9", "--batch-sizes", "2", "--timing-sentences", "6", "--rounds", "1", "--threads", "1"]
    assert main([*base, *fast, "--no-export"]) == 0
    out = capsys.readouterr().out
    assert "not measured: onnx, onnx-int8, onnx-fused, onnx-fused-int8: no ONNX export; run `leap export" in out
    assert "Spearman drop <= 0.05" in out and "NN@10" not in out.split("budget")[1].splitlines()[0]
    assert read_serving(folder)["backend"] == "torch"
    assert main([*base, *fast, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {r["backend"] for r in got["paths"]} == {"torch", "onnx", "onnx-int8"}  # MPNet: no fused graphs
    assert all("spearman_common_depth" in r and "ms_b2" in r for r in got["paths"])
    chosen = got["chosen"]
    (tmp_path / "in.txt").write_text("\n".join(sents[:5]) + "\n")
    out_npy = tmp_path / "e.npy"
    encode = ["encode", str(folder), "--input", str(tmp_path / "in.txt"), "--output", str(out_npy), "--json"]
    assert main([*encode, "--backend", "calibrated"]) == 0
    enc = json.loads(capsys.readouterr().out)
    assert enc["backend"] == chosen["backend"] and enc["exit"]["strategy"] == chosen["strategy"]
    assert np.load(out_npy).shape[0] == 5
    # calibrating the exit rule alone afterwards drops the serving record it no longer matches
    assert (
        main(["calibrate", str(folder), "--data", str(pairs), "--pairs", "--spearman-drop", "1", "--thetas", "0.9"])
        == 0
    )
    assert read_serving(folder) is None


def _path(kind, ms, ok=True, rate=1.0, drop=0.01, spread=0.02):
    """A measured path: ``ms`` at batch 1 with rounds ``spread`` either side, Spearman drop ``drop``."""
    rule = {"full": ExitConfig(strategy="none"), "cut": ExitConfig(strategy="truncate", min_layer=3)}.get(
        kind, ExitConfig(theta=0.9, min_layer=3)
    )
    return PathResult(
        "onnx-int8", rule, rate, 4.0, 1.5, 0.9, 0.99, spearman_drop=drop, ms={1: ms},
        ms_range={1: (ms - spread, ms + spread)}, meets_budget=ok,
    )  # fmt: skip


def test_a_path_faster_only_by_timing_noise_loses_to_the_slower_better_path():
    """Of the paths in budget, one that loses quality serves only when it is faster by more
    than the timing rounds' own spread; within it the better path wins."""
    better = _path("full", 2.00, drop=0.002)
    noisy_cut = _path("cut", 1.97, drop=0.04)  # 1.5% faster, rounds overlap: noise
    assert choose([noisy_cut, better], 1) is better
    clear_cut = _path("cut", 1.50, drop=0.04)  # 25% faster, rounds far apart
    assert choose([better, clear_cut], 1) is clear_cut
    # equal quality within the noise: the simplest kind; nothing-exits rules and paths over budget never serve
    full, cut, exit_ = _path("full", 2.00), _path("cut", 1.99), _path("exit", 1.98)
    assert choose([exit_, cut, full], 1) is full
    assert choose([full, _path("exit", 1.0, rate=0.0)], 1) is full
    assert choose([_path("cut", 1.0, ok=False), full], 1) is full and choose([_path("full", 1.0, ok=False)], 1) is None
    # a record from before the rounds' range was kept counts 3% either side
    old = [_path("full", 2.00, drop=0.002), _path("cut", 1.95, drop=0.04)]
    for p in old:
        p.ms_range = {}
    assert choose(old, 1) is old[0]


def test_a_path_within_budget_on_the_point_estimate_but_not_on_its_bound_is_refused():
    """Budget Spearman drop <= 5 points: a drop of 4.8 whose bootstrap interval reaches 6.1
    is out; the whole interval under 5 is in. The same holds for NN@10's lower end."""
    budget = Budget(spearman_drop=0.05)
    edge = {"nn10": 0.95, "mean_cosine": 0.99, "spearman_drop": 0.048, "spearman_drop_ci": [0.036, 0.061]}
    assert budget.met(edge) and not in_budget(budget, edge)
    assert in_budget(budget, edge | {"spearman_drop_ci": [0.036, 0.049]})
    nn_budget = Budget(nn10=0.9)
    assert nn_budget.met(edge | {"nn10": 0.91}) and not in_budget(
        nn_budget, edge | {"nn10": 0.91, "nn10_ci": [0.88, 0.94]}
    )


def test_the_spearman_drop_interval_comes_from_pairs_resampled_with_the_reference():
    """The path and the full-depth reference are scored on the same resampled pairs: a path
    equal to the reference has a drop of exactly 0 on every resample; a noisier path's
    interval brackets its drop and is wider the fewer the pairs."""
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 400)
    ref = gold + rng.normal(0, 1.0, 400)
    worse = ref + rng.normal(0, 1.5, 400)
    pairs = PairResamples(gold, ref, resamples=300)
    assert pairs.drop_interval(ref) == (0.0, 0.0)
    from scipy.stats import spearmanr

    drop = spearmanr(ref, gold).statistic - spearmanr(worse, gold).statistic
    lo, hi = pairs.drop_interval(worse)
    assert lo < drop < hi and lo > 0
    few = PairResamples(gold[:60], ref[:60], resamples=300).drop_interval(worse[:60])
    assert few[1] - few[0] > hi - lo
    # the mean's interval: a plain loop over the same resamples gives the same percentiles
    values = rng.uniform(0, 1, 50)
    idx = np.random.default_rng(7).integers(0, 50, size=(100, 50))
    loop = [values[row].mean() for row in idx]
    assert np.allclose(mean_interval(values, resamples=100, seed=7), np.percentile(loop, [2.5, 97.5]))


def test_of_paths_tied_at_the_choice_batch_size_one_clearly_slower_at_another_drops_out():
    """Tied at batch 1 and equal in quality within noise, the fused graph that is 25% slower at
    batch 32 (rounds far apart) is not served, although its drop is 0.02 points smaller."""
    plain, fused = _path("full", 2.09, drop=0.0020, spread=0.07), _path("full", 2.14, drop=0.0018, spread=0.07)
    plain.ms[32], plain.ms_range[32] = 1.35, (1.26, 1.37)
    fused.ms[32], fused.ms_range[32] = 1.68, (1.67, 1.77)
    assert choose([fused, plain], 1) is plain
    fused.ms[32], fused.ms_range[32] = 1.36, (1.30, 1.40)  # tied at batch 32 too: the better quality wins
    assert choose([plain, fused], 1) is fused
