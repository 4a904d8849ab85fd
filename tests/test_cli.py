"""The `leap` console script: JSON keys (SPEC), readable tables, clean errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from leap.cli import main

DIAGNOSE_KEYS = {
    "layers",
    "similarity_to_final",
    "stability",
    "exit_rate",
    "cumulative_exit",
    "expected_exit_layer",
    "layer_reduction",
    "monitoring_overhead",
    "verdict",
    "checklist",
}
BENCH_ROW_KEYS = {"full_ms", "exit_ms", "monitor_ms", "speedup", "layer_reduction", "efficiency", "monitoring_overhead"}


@pytest.fixture
def sentence_file(tmp_path, sentences):
    p = tmp_path / "s.txt"
    p.write_text("\n".join(sentences * 2) + "\n", encoding="utf-8")
    return p


def test_diagnose_json(tiny_models, sentence_file, capsys):
    rc = main(
        [
            "diagnose",
            tiny_models["bert"],
            "--sentences",
            str(sentence_file),
            "--json",
            "--overhead-iters",
            "3",
            "--min-layer",
            "3",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= DIAGNOSE_KEYS
    assert out["layers"] == [1, 2, 3, 4, 5, 6]
    assert out["similarity_to_final"][-1] == pytest.approx(1.0)
    assert out["stability"][0] is None and len(out["stability"]) == 6
    assert out["cumulative_exit"][-1] == pytest.approx(1.0)
    assert out["verdict"] == ("incompatible" if out["reasons"] else "compatible")  # each reason named
    assert {"target_layer", "similarity_to_final", "nn_at_10", "exit_rate", "all_pass"} <= set(out["checklist"])


def test_diagnose_verdict_follows_exit_rate(tiny_models, sentence_file, capsys):
    # theta -1: every sample exits at l_min, so diagnostic 2 cannot fire
    main(
        [
            "diagnose",
            tiny_models["bert"],
            "--sentences",
            str(sentence_file),
            "--json",
            "--overhead-iters",
            "3",
            "--theta",
            "-1",
            "--min-layer",
            "2",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert out["exit_rate"] == 1.0 and out["expected_exit_layer"] == 2.0
    assert not any("zero exit rate" in r for r in out["reasons"])
    # theta 1 with k=1: no sample exits (cosine of distinct layers is below 1)
    main(
        [
            "diagnose",
            tiny_models["bert"],
            "--sentences",
            str(sentence_file),
            "--json",
            "--overhead-iters",
            "3",
            "--theta",
            "1",
            "--min-layer",
            "2",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert out["exit_rate"] == 0.0 and out["verdict"] == "incompatible"
    assert any("zero exit rate" in r for r in out["reasons"])


def test_diagnose_table(tiny_models, sentence_file, capsys):
    assert main(["diagnose", tiny_models["mpnet"], "--sentences", str(sentence_file), "--overhead-iters", "3"]) == 0
    text = capsys.readouterr().out
    assert "sim_to_final" in text and "verdict:" in text and "l_min 3" in text  # half depth of 6 layers


def test_bench_json(tiny_models, sentence_file, tmp_path, capsys):
    out_file = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            tiny_models["bert"],
            "--sentences",
            str(sentence_file),
            "--batch-sizes",
            "1",
            "4",
            "--warmup",
            "1",
            "--iters",
            "3",
            "--threads",
            "1",
            "--json",
            "--output",
            str(out_file),
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["batch_size"] for r in out["rows"]] == [1, 4]
    for r in out["rows"]:
        assert set(r) >= BENCH_ROW_KEYS
        assert r["efficiency"] == pytest.approx(r["speedup"] / r["layer_reduction"])
    assert out["device"] == "cpu" and out["threads"] == 1 and out["timer"] == "torch.utils.benchmark"
    for r in out["rows"]:
        lo, hi = r["speedup_ci95"]
        assert lo <= r["speedup"] <= hi
    assert {"torch", "transformers", "sentence_transformers"} <= set(out["versions"])
    assert json.loads(out_file.read_text()) == out


def test_encode_writes_npy(tiny_models, sentence_file, tmp_path, capsys):
    emb, layers = tmp_path / "e.npy", tmp_path / "l.npy"
    rc = main(
        [
            "encode",
            tiny_models["distilbert"],
            "--input",
            str(sentence_file),
            "--output",
            str(emb),
            "--exit-layers",
            str(layers),
            "--theta",
            "0.5",
            "--min-layer",
            "2",
            "--json",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    e, l = np.load(emb), np.load(layers)
    n = len(sentence_file.read_text().splitlines())
    assert e.shape == (n, 32) and l.shape == (n,) and summary["num_sentences"] == n
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert not list(tmp_path.glob(".*tmp*")), "no temp files left behind"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["diagnose", "/no/such/model"], "does not exist"),
        (["bench", "{bert}", "--theta", "2"], "theta must lie in [-1, 1]"),
        (["diagnose", "{bert}", "--min-layer", "9"], "min_layer must lie in 1..6"),
        (["encode", "{bert}", "--patience", "0", "--input", "x", "--output", "y.npy"], "patience (k) must be >= 1"),
        (["encode", "{bert}", "--input", "/no/such/file.txt", "--output", "y.npy"], "does not exist"),
        (["encode", "{bert}", "--input", "{tmp}", "--output", "y.npy"], "is a folder"),
        (["encode", "{bert}", "--input", "{tmp}/empty.txt", "--output", "y.npy"], "is empty"),
        (["encode", "{bert}", "--device", "cuda", "--input", "{tmp}/one.txt", "--output", "y.npy"], "use --device cpu"),
        (["diagnose", "{bert}", "--device", "cuda"], "use --device cpu"),
        (["bench", "{bert}", "--device", "cuda:0"], "use --device cpu"),
        (["bench", "{bert}", "--device", "gpu"], "not a torch device"),
        (
            [
                "encode",
                "{bert}",
                "--backend",
                "onnx",
                "--device",
                "cuda",
                "--input",
                "{tmp}/one.txt",
                "--output",
                "y.npy",
            ],
            "runs on the CPU",
        ),
        (
            ["amortize", "--requests-per-day", "1e6", "--bench", "{tmp}/missing.json", "--train-hours", "1"],
            "does not exist",
        ),
        (
            ["amortize", "--requests-per-day", "1e6", "--bench", "{tmp}/norows.json", "--train-hours", "1"],
            "has no rows",
        ),
        (["amortize", "--requests-per-day", "1e6", "--bench", "{tmp}/one.txt", "--train-hours", "1"], "is not JSON"),
        (
            [
                "amortize",
                "--requests-per-day",
                "1e6",
                "--full-ms",
                "2",
                "--exit-ms",
                "1",
                "--train-benchmark",
                "{tmp}/missing.tsv",
            ],
            "does not exist",
        ),
    ],
    ids=[
        "missing_model",
        "theta_out_of_range",
        "min_layer_too_deep",
        "patience_0",
        "missing_input",
        "input_is_folder",
        "empty_input",
        "encode_cuda_without_gpu",
        "diagnose_cuda_without_gpu",
        "bench_cuda0_without_gpu",
        "not_a_device",
        "onnx_on_cuda",
        "bench_json_missing",
        "bench_json_without_rows",
        "bench_not_json",
        "train_benchmark_missing",
    ],
)
def test_cli_errors_exit_2_with_one_line(tiny_models, argv, message, tmp_path, capsys, monkeypatch):
    import torch

    from leap.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "one.txt").write_text("a sentence\n")
    (tmp_path / "norows.json").write_text('{"device": "cpu"}')
    argv = [a.format(tmp=tmp_path, **tiny_models) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len([l for l in err.splitlines() if "error" in l]) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "y.npy").exists()


def test_cli_error_in_a_real_process_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "leap.cli", "diagnose", "/no/such/model"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_every_subcommand_has_help(capsys):
    for cmd in ("diagnose", "bench", "encode", "convert", "calibrate", "amortize", "export"):
        with pytest.raises(SystemExit) as done:
            main([cmd, "--help"])
        assert done.value.code == 0 and "--json" in capsys.readouterr().out, cmd


def test_version_and_python_dash_m():
    import leap

    proc = subprocess.run([sys.executable, "-m", "leap", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"leap {leap.__version__}"


def test_convert_writes_an_exit_enabled_folder_that_serves_its_rule(tiny_models, sentence_file, tmp_path, capsys):
    from leap.core.exit_config import ExitConfig
    from leap.serving.model import ExitSentenceTransformer

    out = tmp_path / "exit-model"
    rc = main(["convert", tiny_models["bert"], str(out), "--theta", "0.9", "--fit-maps", str(sentence_file), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["exit"]["min_layer"] == 3 and summary["layer_maps"] is True
    model = ExitSentenceTransformer(str(out), device="cpu")
    assert model.exit_config == ExitConfig(theta=0.9, min_layer=3) and model.layer_maps is not None
    # the CLI uses the folder's rule unless told otherwise
    rc = main(["encode", str(out), "--input", str(sentence_file), "--output", str(tmp_path / "e.npy"), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["exit"]["theta"] == 0.9


def test_convert_refuses_non_mean_pooling(tmp_path, tiny_models, capsys):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    st = SentenceTransformer(tiny_models["bert"], device="cpu")
    SentenceTransformer(modules=[st[0], Pooling(32, pooling_mode="cls")], device="cpu").save(str(tmp_path / "cls"))
    assert main(["convert", str(tmp_path / "cls"), str(tmp_path / "out")]) == 2
    assert "pooling mode 'cls' is not supported" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_checklist_cannot_pass_when_nothing_exits(tiny_models, sentence_file, capsys):
    main(
        [
            "diagnose",
            tiny_models["bert"],
            "--sentences",
            str(sentence_file),
            "--json",
            "--overhead-iters",
            "3",
            "--theta",
            "1",
            "--min-layer",
            "2",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    c = out["checklist"]
    assert out["exit_rate"] == 0.0 and c["target_layer"] is None and c["all_pass"] is False
    for k in ("similarity_to_final", "nn_at_10", "exit_rate"):
        assert c[k]["pass"] is False and c[k]["exit_rate"] == 0.0 and "expected_exit_layer" in c[k]


def test_diagnose_judges_the_mapped_vectors_a_model_with_maps_serves(tiny_models, sentence_file, tmp_path, capsys):
    """Raw layer vectors (the paper's convergence analysis) and the served ones (maps applied)
    are both reported; the checklist reads the served ones."""
    from leap.core.builtin import builtin_sentences
    from leap.core.exit_config import ExitConfig
    from leap.deploy.convert import convert

    folder = convert(
        tiny_models["bert"],
        tmp_path / "m",
        exit=ExitConfig(theta=-1.0, min_layer=3),
        fit_maps_on=builtin_sentences()[:80],
    )
    argv = ["diagnose", str(folder), "--sentences", str(sentence_file), "--overhead-iters", "3"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    raw, served = out["similarity_to_final"], out["as_served"]["similarity_to_final"]
    assert out["layer_maps"] is True and served != pytest.approx(raw)
    target = out["checklist"]["target_layer"]
    assert target == 3  # theta -1: every row exits at l_min
    assert out["checklist"]["similarity_to_final"]["value"] == pytest.approx(served[target - 1])
    assert out["checklist"]["nn_at_10"]["value"] == pytest.approx(out["as_served"]["nn_at_10"][target - 1])
    assert main(argv) == 0
    assert "served_sim" in capsys.readouterr().out


def test_bench_stops_a_batch_size_once_every_ratio_is_tight(tiny_models, sentence_file, capsys):
    from leap.deploy.bench import MIN_ROUNDS, is_tight

    assert is_tight({"full": [10.0, 10.1, 9.9, 10.0], "exit": [5.0, 5.05, 4.95, 5.0]}, 0.02)
    assert not is_tight({"full": [10.0, 10.1, 9.9, 10.0], "exit": [5.0, 7.0, 3.0, 5.0]}, 0.02)
    args = ["bench", tiny_models["bert"], "--sentences", str(sentence_file), "--batch-sizes", "4", "--warmup", "2"]
    args += ["--iters", "40", "--rounds", "20", "--threads", "1", "--json"]
    assert main([*args, "--tight", "0.49"]) == 0
    loose = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    every = json.loads(capsys.readouterr().out)
    assert loose["tight"] == 0.49 and MIN_ROUNDS <= loose["rows"][0]["rounds_timed"] < 20
    assert every["tight"] is None and every["rows"][0]["rounds_timed"] == 20
