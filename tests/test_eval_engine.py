"""The evaluation passes on ONNX Runtime fp32 give torch's numbers: every pass is checked on a
sample against torch and falls back to torch when the check fails; the model folder is untouched."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e .[onnx]")

from leap.core.exit_config import ExitConfig  # noqa: E402
from leap.deploy.convert import convert  # noqa: E402
from leap.workflow.data import demo_pairs, demo_retrieval  # noqa: E402
from leap.workflow.eval_engine import CheckedLayerVectors, check_sample  # noqa: E402
from leap.workflow.evaluate import evaluate_beir, evaluate_pairs, load_model  # noqa: E402


@pytest.fixture(scope="module")
def folder(tiny_models, tmp_path_factory):
    from leap.core.builtin import builtin_sentences

    root = tmp_path_factory.mktemp("evalengine")
    return convert(tiny_models["mpnet"], root / "m", exit=ExitConfig(theta=0.9), fit_maps_on=builtin_sentences()[:40])


def test_onnx_layer_vectors_equal_torch_and_the_folder_is_untouched(folder):
    torch_model = load_model(str(folder))
    onnx_model = load_model(str(folder), engine="onnx")
    assert isinstance(onnx_model, CheckedLayerVectors) and onnx_model.num_layers == torch_model.num_layers
    texts = [f"sentence number {i} " + "with words " * (i % 9) for i in range(70)]
    got = onnx_model.layer_embeddings(texts, batch_size=16)
    want = torch_model.layer_embeddings(texts, batch_size=16)
    assert float((got - want).abs().max()) <= 1e-5
    (check,) = onnx_model.checks
    assert check["engine"] == "onnx" and check["sample"] == 32 and check["max_abs_diff"] <= 1e-5
    assert not (folder / "onnx").exists()  # exported in a scratch copy
    onnx_model.max_seq_length = 6  # a cap set on the evaluation model holds on the engine too
    torch_model.max_seq_length = 6
    assert float((onnx_model.layer_embeddings(texts) - torch_model.layer_embeddings(texts)).abs().max()) <= 1e-5


def test_a_pass_that_fails_the_check_runs_on_torch_with_one_log_line(folder, caplog):
    torch_model = load_model(str(folder))
    strict = CheckedLayerVectors(load_model(str(folder)), tolerance=0.0)
    texts = [f"another text {i} " * (1 + i % 4) for i in range(40)]
    with caplog.at_level(logging.WARNING, logger="leap.workflow.eval_engine"):
        got = strict.layer_embeddings(texts)
    assert strict.checks[-1]["engine"] == "torch" and strict.checks[-1]["max_abs_diff"] > 0
    assert (got == torch_model.layer_embeddings(texts)).all()  # torch's vectors, bit for bit
    assert len([r for r in caplog.records if "this pass runs on torch" in r.getMessage()]) == 1


def test_evaluations_on_either_engine_report_the_same_numbers(folder):
    cfg = ExitConfig(theta=0.9, min_layer=3)
    pairs = demo_pairs(80)
    kw = {"thetas": (0.9,), "pabee": ((0.99, 3),)}
    a = evaluate_pairs(load_model(str(folder)), pairs, cfg, **kw)
    b = evaluate_pairs(load_model(str(folder), engine="onnx"), pairs, cfg, **kw)
    for split, res in a["splits"].items():
        other = b["splits"][split]
        for key in ("spearman_exit", "spearman_full", "exit_rate", "expected_exit_layer"):
            assert other[key] == pytest.approx(res[key], abs=1e-6), key
        assert np.allclose(other["spearman_per_layer"], res["spearman_per_layer"], atol=1e-6)
    data = demo_retrieval(n_docs=60, n_queries=12, n_dev=6)
    ra = evaluate_beir(load_model(str(folder)), data, cfg, **kw)
    rb = evaluate_beir(load_model(str(folder), engine="onnx"), data, cfg, **kw)
    assert rb["full"] == pytest.approx(ra["full"], abs=1e-6) and rb["exit"]["NDCG@10"] == pytest.approx(
        ra["exit"]["NDCG@10"], abs=1e-6
    )


def test_the_checked_sample_holds_the_longest_texts():
    texts = ["x" * (i % 50) for i in range(500)]
    idx = check_sample(texts, 32)
    assert len(idx) <= 32 and max(len(texts[i]) for i in idx) == 49 and len(set(idx)) == len(idx)
    assert list(check_sample(texts[:10], 32)) == list(range(10))
