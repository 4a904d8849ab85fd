"""Sizing a run before it runs: the FLOP and parameter counts match a real model's, steps follow
the training config, the paper configuration is sized with its assumptions printed, and a
finished run's benchmark files give the FLOP rate each job reached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from leap.training.config import TrainConfig
from leap.workflow.sizing import Shape, cross_check, load_assumptions, main, model_shape, run_steps

ROOT = Path(__file__).resolve().parents[1]


def test_the_flop_and_parameter_counts_match_a_real_bert(tiny_models):
    """torch's own FLOP counter over a forward pass of the tiny BERT, against the formula."""
    from torch.utils.flop_counter import FlopCounterMode

    model = AutoModel.from_pretrained(tiny_models["bert"], attn_implementation="eager").eval()  # matmuls counted
    shape = model_shape(tiny_models["bert"], load_assumptions())
    assert (shape.layers, shape.hidden) == (model.config.num_hidden_layers, model.config.hidden_size)
    assert shape.params == pytest.approx(sum(p.numel() for p in model.parameters()), rel=0.02)
    batch, seq = 4, 24
    ids = torch.randint(5, 100, (batch, seq))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert shape.forward_flops(batch * seq, seq) == pytest.approx(counter.get_total_flops(), rel=0.05)


def test_steps_follow_max_steps_epochs_and_max_samples():
    assert run_steps(TrainConfig(batch_size=64, epochs=10), 1_500_000) == 234_375
    assert run_steps(TrainConfig(batch_size=64, epochs=2, max_samples=50_000), 1_500_000) == 1563
    assert run_steps(TrainConfig(batch_size=32, max_steps=400), 20_000) == 400


def test_the_paper_configuration_is_sized_with_its_assumptions(capsys):
    assert main([str(ROOT / "config/config.yaml"), "--gpu", "H100-80GB"]) == 0
    out = capsys.readouterr().out
    assert "1,500,000 training sentences: the paper's count" in out and "H100-80GB" in out
    for stage in ("teacher caches", "training", "evaluation", "**total**", "Assumptions:"):
        assert stage in out
    teacher_row = next(line for line in out.splitlines() if line.startswith("| teacher caches"))
    # 16 of the teacher's 24 layers (pi of the 12-layer students and of the 7-layer fixed-depth one), float16
    assert "16 of 24 layers" in teacher_row
    assert f"| {1_500_000 * 16 * 1024 * 2 / 1024**3:.1f} |" in teacher_row
    assert main([str(ROOT / "config/config.yaml"), "--gpu", "TPU"]) == 2
    assert "unknown GPU 'TPU'" in capsys.readouterr().err


def test_a_model_of_unknown_shape_is_one_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"training": {"student": "someone/unknown-model"}}))
    assert main([str(ROOT / "config/demo.yaml"), str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "shape of model 'someone/unknown-model' is unknown offline" in err and len(err.splitlines()) == 1


def test_the_cross_check_reads_the_rate_each_job_reached(tmp_path):
    bench = tmp_path / "benchmarks/train/leap/seed0.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\n200.0\t0:03:20\n")
    (tmp_path / "leap/seed0").mkdir(parents=True)
    (tmp_path / "leap/seed0/train_config.json").write_text(json.dumps({"steps": 400}))
    runs = {("leap", 0): {"steps": 400, "flops_per_step": 5e10, "layers": 6}, ("baseline", 0): {"steps": 1}}
    (check,) = cross_check(None, runs, tmp_path)
    assert check["run"] == "leap/seed0" and check["gflop_per_s"] == pytest.approx(400 * 5e10 / 200 / 1e9)


def test_activation_memory_doubles_in_fp32():
    s = Shape(layers=12, hidden=384, intermediate=1536, vocab=30522)
    assert s.activation_bytes(64, 128, 32) == 2 * s.activation_bytes(64, 128, 16)
