"""The run plan of a config, without Snakemake: runs, teachers, evaluation files, checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from leap.errors import LeapError
from leap.workflow.plan import Plan, slug

ROOT = Path(__file__).resolve().parents[1]


def cpu_config(tmp_path) -> dict:
    cfg = yaml.safe_load((ROOT / "config/cpu.yaml").read_text())
    (tmp_path / "data").mkdir(exist_ok=True)
    return cfg | {"data_dir": str(tmp_path / "data")}


def test_cpu_plan_runs_teachers_and_evaluations(tmp_path):
    plan = Plan(cpu_config(tmp_path))
    assert len(plan.run_configs) == 4 * 3 + 11  # main variants x 3 seeds + single-seed runs
    assert plan.seeds_of("leap") == [0, 1, 2] and plan.seeds_of("abl_final") == [0]
    assert set(plan.teachers) == {"all-mpnet-base-v2", "all-MiniLM-L6-v2"}  # self-distillation has its own
    assert plan.cache_of("self_xd", 1) == "results/cpu/teacher/all-MiniLM-L6-v2"
    # only runs with L_inter read the teacher's aligned layers: the 6-layer students' map and
    # the 4-layer fixed-depth student's uniform one (self_xd_mpnet reads the final layer only)
    assert plan.students_of("all-mpnet-base-v2") == [
        ("packaged:all-MiniLM-L6-v2", 4, ()),
        ("packaged:all-MiniLM-L6-v2", 6, (2, 4, 6, 8, 10, 12)),
    ]
    beir = [p for p in plan.all_evals if "/beir_" in p]
    assert len(beir) == 4 * 3 * 2 + 1 * 2 + 2 * 2 + 2 * 1
    assert "results/cpu/published/all-mpnet-base-v2/eval/beir_nfcorpus.json" in beir
    assert "results/cpu/published/all-mpnet-base-v2/eval/beir_scifact.json" not in beir  # retrieval_sets
    assert len(plan.latency_runs) == 2 * 5 and len(plan.model_cards) == 12  # latency and serving paths
    assert "results/cpu/self_xd/seed0/eval/serving_paths.json" in plan.latency_runs
    assert plan.benchmarks == ["STS-B", "scifact", "nfcorpus", "scifact (query-only)", "nfcorpus (query-only)"]
    assert plan.diagnosed == ["all-MiniLM-L6-v2", "all-mpnet-base-v2"]


def test_run_outputs_are_what_the_tables_read_from_training_and_evaluation(tmp_path):
    plan = Plan(cpu_config(tmp_path))
    outs = plan.run_outputs
    assert set(plan.all_evals + plan.diagnostics + plan.model_cards) <= set(outs)
    configs = [p for p in outs if p.endswith("/train_config.json")]
    assert len(configs) == len(plan.run_configs)  # every run, every seed
    assert not [p for p in outs if "/tables/" in p or "/figures/" in p or p.endswith("/model")]
    assert len(outs) == len(set(outs))


def test_the_model_an_evaluation_reads(tmp_path):
    plan = Plan(cpu_config(tmp_path))
    assert plan.model_of("leap/seed1") == "results/cpu/leap/seed1/model"
    assert plan.model_of("published/all-MiniLM-L6-v2") == "packaged:all-MiniLM-L6-v2"  # not a workflow file
    assert plan.model_input("published/all-MiniLM-L6-v2") == []
    assert plan.model_of("published/all-MiniLM-L6-v2-maps") == "results/cpu/published/all-MiniLM-L6-v2-maps/model"


def test_a_checkpoint_evaluated_with_and_without_maps_shares_one_pass_of_layer_vectors(tmp_path):
    plan = Plan(cpu_config(tmp_path))
    mpnet = "results/cpu/layer_vectors/all-mpnet-base-v2/beir_nfcorpus.safetensors"
    assert plan.vectors_of("published/all-mpnet-base-v2", "nfcorpus") == [mpnet]
    assert plan.vectors_of("published/all-mpnet-base-v2-maps", "nfcorpus") == [mpnet]
    assert plan.vectors_of("published/all-MiniLM-L6-v2-maps", "scifact") == [
        "results/cpu/layer_vectors/all-MiniLM-L6-v2/beir_scifact.safetensors"
    ]
    assert plan.vectors_of("leap/seed0", "scifact") == []  # a trained student is its own checkpoint
    assert plan.vector_models == {
        "all-MiniLM-L6-v2": "packaged:all-MiniLM-L6-v2",
        "all-mpnet-base-v2": "models/all-mpnet-base-v2",
    }
    cfg = cpu_config(tmp_path)
    cfg["published_models"] = [m for m in cfg["published_models"] if not m["name"].endswith("-maps")]
    assert Plan(cfg).shared_vectors == {}  # one evaluation per checkpoint: it encodes for itself


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"variants": {"main": ["leap"], "comparisons": ["deebert"]}}, "deebert needs the baseline"),
        (
            {
                "evaluation": {"heads_reference": "leap_xd"},
                "variants": {"main": ["baseline"], "comparisons": ["deebert"]},
            },
            "heads_reference 'leap_xd' is not a trained variant",
        ),
        ({"data_dir": None}, "data_dir is not set"),
        ({"data_dir": "/no/such/folder"}, "is not a folder"),
        ({"variants": {"main": ["baseline", "leapp"]}}, "unknown variant 'leapp'"),
    ],
    ids=["deebert_without_baseline", "heads_reference", "no_data_dir", "missing_data_dir", "unknown_variant"],
)
def test_plan_refuses_inconsistent_configs_in_one_line(tmp_path, patch, message):
    cfg = cpu_config(tmp_path)
    for k, v in patch.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    with pytest.raises(LeapError, match=message) as err:
        Plan(cfg)
    assert "\n" not in str(err.value).strip()


def test_slug_names_cache_folders():
    assert slug("packaged:all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert slug("models/all-mpnet-base-v2") == "all-mpnet-base-v2"
    assert slug("sentence-transformers/bert-large-nli-mean-tokens") == "bert-large-nli-mean-tokens"


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"gpu": True}, "gpu: true"),
        ({"evaluation": {"device": "cuda"}}, "evaluation.device: cuda"),
        ({"latency": {"device": "cuda"}}, "latency.device: cuda"),
        ({"training": {"precision": "fp16"}}, "training.precision: fp16"),
        ({"training": {"precision": "bf16"}}, "training.precision: bf16"),
    ],
    ids=["gpu", "evaluation_device", "latency_device", "fp16", "bf16"],
)
def test_gpu_settings_are_named_and_refused_without_a_gpu(tmp_path, monkeypatch, patch, key):
    import torch

    from leap.workflow.config import check_gpu_settings, gpu_settings

    cfg = cpu_config(tmp_path)
    cfg["training"] = {**cfg["training"], "precision": "fp32"}  # one GPU setting at a time
    for k, v in patch.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    plan = Plan(cfg)
    assert gpu_settings(plan.cfg, cpu_bf16=False) == [key]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("leap.workflow.config.cpu_has_bf16", lambda: False)
    with pytest.raises(LeapError, match=f"asks for a GPU \\({key}\\) but this machine has none"):
        check_gpu_settings(plan.cfg)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_gpu_settings(plan.cfg)  # a GPU machine runs it
    # the CPU config asks for none on a CPU with native bfloat16 (its training precision)
    assert gpu_settings(Plan(cpu_config(tmp_path)).cfg, cpu_bf16=True) == []
    if key == "training.precision: bf16":  # a CPU with native bfloat16 runs it without a GPU
        assert gpu_settings(plan.cfg, cpu_bf16=True) == []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr("leap.workflow.config.cpu_has_bf16", lambda: True)
        check_gpu_settings(plan.cfg)
