"""Snakemake on a tiny config: outputs exist and parse, a rerun has nothing to do, a bad
config is rejected by the schema before any job runs, lint and snakefmt are clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# one worker runs the two tests that execute the workflow here, in order (pytest -n with
# --dist loadgroup): one of them edits a leap module for a moment to check what an edit reruns
SERIAL = pytest.mark.xdist_group("workflow")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(cwd), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def tiny_cfg(tiny_models) -> dict:
    """The whole DAG on tiny random models and a little synthetic data (about a minute)."""
    return {
        "experiment": "tiny",
        "threads": 1,
        "data": {
            "train_sources": ["demo:sentences"],
            "stsb": "demo:pairs",
            "qqp": "demo:qqp",
            "retrieval": ["demo:retrieval"],
            "nli": "demo:pairs",
            "max_sentences": 96,
            "demo_size": 300,
        },
        "teacher": {"model": tiny_models["mpnet"], "shard_size": 64},
        "training": {
            "student": tiny_models["bert"],
            "n_layers": 4,
            "epochs": 1,
            "batch_size": 16,
            "max_seq_length": 24,
            "log_steps": 2,
            "loss": {"focus_layer": 2},
        },
        "seeds": [0],
        "variants": {
            "main": ["baseline", "leap", "leap_xd"],
            "ablation": ["abl_final"],
            "sweep": ["beta0.2"],
            "comparisons": ["fixed_depth", "adaptive_layer", "layerskip", "deebert"],
        },
        "variant_overrides": {"fixed_depth": {"n_layers": 3}},
        "sweep": {"max_samples": 48},
        "evaluation": {"exit": {"min_layer": 2}, "layer_sentences": 60, "retrieval_variants": ["baseline", "leap_xd"]},
        "latency": {
            "batch_sizes": [1, 4],
            "warmup": 1,
            "iters": 3,
            "serving_pairs": 30,
            "serving_thetas": [0.9],
            "serving_batch_sizes": [1],
        },
        "published_models": [
            {"name": "tiny-bert", "model": tiny_models["bert"]},
            {"name": "tiny-mpnet", "model": tiny_models["mpnet"]},
            {"name": "tiny-bert-maps", "model": tiny_models["bert"], "fit_maps": 100},
        ],
        "diagnostic": {"theta": 0.95, "patience": 1, "min_layer": 3, "overhead_iters": 2},
    }


@pytest.fixture
def tiny_config(tmp_path, tiny_models) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_cfg(tiny_models)))
    return path


def jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts from the job-stats table of a dry run."""
    out, counts, on = proc.stdout + proc.stderr, {}, False
    for line in out.splitlines():
        if line.startswith("job ") and "count" in line:
            on = True
            continue
        if on:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
            elif counts and not line.strip():
                break
    return counts


@SERIAL
@pytest.mark.slow
def test_tiny_workflow_runs_and_is_idempotent(tmp_path, tiny_config):
    proc = run(["--cores", "2", "--configfile", str(tiny_config)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = tmp_path / "results/tiny"
    table = pd.read_csv(res / "tables/table2_cross_distillation.csv")
    assert table["Model"].tolist() == ["tiny-bert", "tiny-mpnet"]
    assert set(table["Verdict"]) <= {"compatible", "incompatible"}
    for v in ("baseline", "leap", "abl_final", "beta0.2", "fixed_depth", "adaptive_layer", "layerskip"):
        run_dir = res / v / "seed0"
        assert (run_dir / "model" / "modules.json").exists()
        assert json.loads((run_dir / "eval/stsb.json").read_text())["splits"]["test"]["n_pairs"] > 0
        assert (run_dir / "eval/layers.json").exists() and (run_dir / "train_log.jsonl").read_text()
    assert json.loads((res / "leap_xd/seed0/eval/beir_retrieval.json").read_text())["full"]["NDCG@10"] >= 0
    assert (res / "leap_xd/seed0/model/layer_maps.safetensors").exists()
    assert json.loads((res / "published/tiny-mpnet/eval/stsb.json").read_text())["splits"]["test"]["frontier"]
    # a published checkpoint exit-enabled with fitted maps: its own folder, evaluated like a run, no diagnostic
    assert (res / "published/tiny-bert-maps/model/layer_maps.safetensors").exists()
    assert json.loads((res / "published/tiny-bert-maps/eval/stsb.json").read_text())["layer_maps"] is True
    assert not (res / "published/tiny-bert-maps/eval/diagnostic.json").exists()
    frontier = pd.read_csv(res / "tables/frontier.csv")
    assert {"published:tiny-bert", "published:tiny-bert-maps", "leap_xd", "fixed_depth"} <= set(frontier["model"])
    assert {"common_depth", "oracle"} <= set(frontier["rule"])
    assert {"STS-B", "retrieval", "retrieval (query-only)"} <= set(frontier["benchmark"])
    assert (res / "figures/fig3_frontier_retrieval_query_only.png").exists()
    summary = pd.read_csv(res / "tables/frontier_summary.csv")
    assert "oracle_advantage_at_bar" in summary and not summary["best_at"].fillna("").str.startswith("oracle").any()
    mixing = pd.read_csv(res / "tables/table_layer_mixing.csv")
    assert {"STS-B", "retrieval"} <= set(mixing["Benchmark"]) and "Contrast (dev-chosen)" in mixing
    prov = json.loads((res / "provenance.json").read_text())
    assert len(prov["commit"]) == 40 and isinstance(prov["consistent"], bool) and prov["machine"]["cores"] >= 1
    assert {"train", "evaluate"} <= set(prov["stages"]) and prov["commands"]
    assert "## Provenance" in (res / "report.md").read_text()
    assert (res / "figures/fig3_frontier_sts_b.png").exists() and (res / "figures/fig3_frontier_retrieval.png").exists()
    assert "exit advantage" in (res / "leap/seed0/model_card.md").read_text().lower()
    qqp = json.loads((res / "baseline/seed0/eval/qqp.json").read_text())["splits"]["test"]
    assert 0 <= qqp["ap_full"] <= 1 and not (res / "abl_final/seed0/eval/qqp.json").exists()  # main models only
    assert "QQP AP (exit)" in pd.read_csv(res / "tables/table1_main.csv").columns
    assert json.loads((res / "deebert/seed0/eval/stsb_heads.json").read_text())["test"]["spearman_exit"] is not None
    assert json.loads((res / "leap/seed0/eval/latency.json").read_text())["rows"][0]["batch_size"] == 1
    from leap.records import record_type

    typed = [(p, record_type(p.stem)) for p in res.rglob("eval/*.json") if record_type(p.stem)]
    assert {p.stem for p, _ in typed} >= {"stsb", "qqp", "layers", "latency", "stsb_heads", "beir_retrieval"}
    for p, kind in typed:  # every evaluation the readers read round-trips through its record
        d = json.loads(p.read_text())
        assert kind.from_dict(d).to_dict() == d, p
    serving = json.loads((res / "leap/seed0/eval/serving_paths.json").read_text())
    assert {(p["backend"], p["kind"]) for p in serving["paths"]} >= {
        ("torch", "cut"),
        ("torch", "exit"),
        ("torch", "full"),
    }
    assert all(p["ms_b1"] > 0 and -1 <= p["spearman"] <= 1 for p in serving["paths"])
    index = json.loads((res / "tables/index.json").read_text())
    assert index["table1_main"] == "written" and index["table11_ablation"] == "written"
    for name, state in index.items():
        if state == "written":
            assert not pd.read_csv(res / f"tables/{name}.csv").empty
    assert (res / "figures/fig1_layer_dynamics.png").stat().st_size > 1000
    claims = pd.read_csv(res / "claims.csv")
    assert list(claims.columns[:5]) == ["claim", "paper", "measured", "unit", "verdict"]
    assert set(claims["variant"].dropna()) == {"leap", "leap_xd"}  # LEAP claims repeated for the extra objective
    report = (res / "report.md").read_text()
    assert "Synthetic data" in report.splitlines()[2] and report.index("## The frontier") < report.index("## Claims")
    assert (res / "logs/train/leap/seed0.log").exists() and (res / "benchmarks/train/leap/seed0.tsv").exists()
    again = run(["--cores", "2", "--configfile", str(tiny_config), "-n"], tmp_path)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # Snakemake's own HTML report holds every table and figure of the run, captioned
    html = run(["--configfile", str(tiny_config), "--report", str(tmp_path / "report.html")], tmp_path)
    assert html.returncode == 0, html.stderr[-3000:]
    page = (tmp_path / "report.html").read_text(encoding="utf-8", errors="replace")
    from leap.results import FIGURE_NAMES, TABLE_NAMES

    for name in [
        *TABLE_NAMES,
        *FIGURE_NAMES,
        "frontier.csv",
        "frontier_summary.csv",
        "fig3_frontier_sts_b",
        "claims.csv",
        "model_card.md",
    ]:
        assert name in page, name
    assert "Frontier" in page and "Layer analyses" in page and "Read the frontier first" in page

    # change one variant's parameter: only that variant's chain (and the report) reruns
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["variant_overrides"]["layerskip"] = {"lr": 1e-4}
    tiny_config.write_text(yaml.safe_dump(cfg))
    changed = run(["--cores", "2", "--configfile", str(tiny_config), "-n"], tmp_path)
    counts = jobs(changed)
    assert counts.get("train_student") == 1, changed.stdout[-3000:]
    assert counts.get("eval_stsb") == 1 and "eval_qqp" not in counts  # layerskip is not a main variant
    assert "teacher_cache" not in counts and "extract_data" not in counts and "diagnose_published" not in counts
    assert "layerskip" in changed.stdout + changed.stderr

    # a new variant of the same shape (init, depth, layer map) trains without rebuilding the cache
    cfg["variants"]["ablation"] = ["abl_final", "abl_contrast"]
    tiny_config.write_text(yaml.safe_dump(cfg))
    counts = jobs(run(["--cores", "2", "--configfile", str(tiny_config), "-n"], tmp_path))
    assert counts.get("train_student") == 2 and "teacher_cache" not in counts

    # a variant that reads only the teacher's final layer (no L_inter) changes its depth
    # without rebuilding the cache (that depth's layer map is never read)
    cfg["variant_overrides"]["leap_xd"] = {"n_layers": 3, "loss": {"layer_map": None}}
    tiny_config.write_text(yaml.safe_dump(cfg))
    counts = jobs(run(["--cores", "2", "--configfile", str(tiny_config), "-n"], tmp_path))
    assert counts.get("train_student") == 3 and "teacher_cache" not in counts  # + leap_xd

    # an edit of leap/teacher.py reruns the cache and what reads it, nothing else (Snakemake
    # compares input checksums, so the edit is a real one, undone at once)
    teacher_py = ROOT / "leap" / "teacher.py"
    original = teacher_py.read_bytes()
    try:
        teacher_py.write_bytes(original + b"# edited by test_workflow\n")
        counts = jobs(run(["--cores", "2", "--configfile", str(tiny_config), "-n"], tmp_path))
    finally:
        teacher_py.write_bytes(original)
    assert counts.get("teacher_cache") == 1 and counts.get("train_student") == 9  # every trained variant
    assert "extract_data" not in counts and "diagnose_published" not in counts
    assert counts.get("eval_stsb") == 9 and counts.get("eval_qqp") == 3  # not the published checkpoints


@SERIAL
@pytest.mark.slow
def test_training_job_killed_mid_run_resumes_on_rerun(tmp_path, tiny_models):
    """Kill the training job (as an OOM killer or a cluster limit would) after a checkpoint:
    Snakemake removes its partial outputs, and the rerun resumes from the checkpoint and
    finishes with a complete log and no checkpoints left."""
    import signal
    import time

    import psutil

    cfg = tiny_cfg(tiny_models)
    cfg["variants"] = {"main": ["leap"], "ablation": [], "sweep": [], "comparisons": []}
    cfg["training"] |= {"max_steps": 400, "checkpoint_steps": 20, "log_steps": 10}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "results/tiny/leap/seed0"
    target = "results/tiny/leap/seed0/train_config.json"
    args = [
        *SNAKEMAKE,
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        target,
        "--cores",
        "1",
        "--configfile",
        str(config),
    ]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not list((run_dir / "checkpoints").glob("checkpoint-*/leap_run.json")):
        assert first.poll() is None, f"workflow ended before a checkpoint: {first.stdout.read()[-3000:]}"
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    jobs_ = [p for p in psutil.Process(first.pid).children(recursive=True) if "train.py" in " ".join(p.cmdline())]
    assert jobs_, "training job process not found"
    for p in jobs_:
        p.send_signal(signal.SIGKILL)
    out = first.communicate(timeout=300)[0]
    assert first.returncode != 0, out[-3000:]
    assert not (run_dir / "model").exists() and not (run_dir / "train_config.json").exists()  # no partial output kept
    assert list((run_dir / "checkpoints").glob("checkpoint-*"))

    again = run([target, "--cores", "1", "--configfile", str(config)], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    log = (tmp_path / "results/tiny/logs/train/leap/seed0.log").read_text()
    assert "resuming from" in log and "checkpoint-" in log
    steps = [json.loads(l)["step"] for l in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(10, 401, 10))  # the log before the kill came back, nothing twice
    assert json.loads((run_dir / "train_config.json").read_text())["steps"] == 400
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"unknown_key": 1}, "Additional properties are not allowed ('unknown_key' was unexpected)"),
        ({"threads": "two"}, "'two' is not of type 'integer'"),
        ({"diagnostic": {"theta": 3}}, "3 is greater than the maximum of 1"),
        ({"variants": {"main": ["baseline", "leapp"]}}, "unknown variant 'leapp'"),
        ({"data": {"train_sources": ["local:nli"]}}, "data_dir is not set"),
        ({"data": {"train_sources": ["local:nli"]}, "data_dir": "/no/such/dir"}, "is not a folder"),
        ({"training": {"loss": {"min_layer": 3}}}, "config key training.loss"),
    ],
    ids=[
        "unknown_key",
        "wrong_type",
        "out_of_range",
        "unknown_variant",
        "no_data_dir",
        "missing_data_dir",
        "renamed_key",
    ],
)
def test_bad_config_rejected_in_a_few_lines(tmp_path, tiny_config, patch, message):
    cfg = yaml.safe_load(tiny_config.read_text()) | patch
    tiny_config.write_text(yaml.safe_dump(cfg))
    proc = run(["--cores", "1", "--configfile", str(tiny_config), "-n"], tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert len((proc.stderr + proc.stdout).splitlines()) < 30  # the offending key, not a schema dump
    assert not (tmp_path / "results").exists()


def test_gpu_settings_without_a_gpu_end_before_any_job_in_one_line(tmp_path, tiny_config):
    """Through Snakemake: the run stops in onstart, before any job, with one line; which keys
    ask for a GPU is checked key by key in tests/test_plan.py."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the settings are valid here")
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["evaluation"] = {**cfg["evaluation"], "device": "cuda"}
    cfg["training"] = {**cfg["training"], "precision": "fp16"}
    tiny_config.write_text(yaml.safe_dump(cfg))
    proc = run(["--cores", "1", "--configfile", str(tiny_config)], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "training.precision: fp16; evaluation.device: cuda" in out and "has none" in out
    assert len([l for l in out.splitlines() if "asks for a GPU" in l]) == 1
    assert not (tmp_path / "results").exists()  # no job ran


def test_committed_schema_is_generated_from_the_dataclasses():
    from leap.config import workflow_schema

    committed = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    assert committed == workflow_schema(), "run `python -m leap.config > config/schema.yaml`"


def test_rules_list_exactly_the_modules_their_scripts_import():
    from leap.dependencies import code_inputs

    teacher = {Path(p).name for p in code_inputs(ROOT, ROOT / "workflow_scripts/teacher_cache.py")}
    assert "teacher.py" in teacher and "run.py" not in teacher and "leap_loss.py" not in teacher
    train = {
        str(Path(p).relative_to(ROOT))
        for p in code_inputs(ROOT, ROOT / "workflow_scripts/train.py", "leap.losses.layerskip")
    }
    assert {"leap/teacher.py", "leap/training/run.py", "leap/losses/layerskip.py"} <= train
    assert "leap/evaluate.py" not in train and "leap/report.py" not in train


def test_paper_config_resolves_offline(tmp_path):
    proc = run(["-n", "--configfile", str(ROOT / "config/config.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = jobs(proc)
    assert counts["train_student"] == 18 and counts["claims_report"] == 1 and counts["frontier"] == 1
    assert counts["eval_beir"] == 30 + 4 * 5  # (baseline, leap) x 3 seeds, and every published checkpoint, x 5 sets
    # STS-B on 18 runs and 4 published checkpoints, QQP on the main models: (baseline, leap) x 3 seeds
    assert counts["eval_stsb"] == 18 + 4 and counts["eval_qqp"] == 6


def test_cpu_config_resolves(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    proc = run(["-n", "--configfile", str(ROOT / "config/cpu.yaml"), "--config", f"data_dir={data}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config_line = next(l for l in (proc.stdout + proc.stderr).splitlines() if "Config file(s)" in l)
    assert "cpu.yaml" in config_line and "demo.yaml" not in config_line  # replaced, not merged into the demo's
    counts = jobs(proc)
    assert counts["train_student"] == 23  # (baseline, leap, leap_fix, self_xd) x 3 seeds + 11 single-seed runs
    assert counts["teacher_cache"] == 2  # all-mpnet-base-v2, and all-MiniLM-L6-v2 for self-distillation
    # two BEIR sets: the main models on 3 seeds, leap_xd on its one, all-MiniLM-L6-v2 with and
    # without maps; the 12-layer checkpoints on NFCorpus only (retrieval_sets)
    assert counts["eval_beir"] == 4 * 3 * 2 + 1 * 2 + 2 * 2 + 2 * 1
    assert counts["eval_stsb"] == 23 + 4
    assert counts["exit_enable_published"] == 2 and counts["diagnose_published"] == 2
    assert counts["latency_bench"] == 5 and counts["serving_paths"] == 5  # latency seeds 1


def test_cpu_frontier_overlay_keeps_the_frontier_and_seeds_and_drops_ablations(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    proc = run(
        ["-n", "--configfile", str(ROOT / "config/cpu.yaml"), str(ROOT / "config/cpu_frontier.yaml")]
        + ["--config", f"data_dir={data}"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = jobs(proc)
    assert counts["train_student"] == 4 * 3 + 4  # (baseline, leap, leap_fix, self_xd) x 3 seeds + 4 trained comparisons
    assert counts["eval_beir"] == 3 * 2 + 2 * 2 + 2 * 1 and counts["latency_bench"] == 3
    assert counts["frontier"] == 1 and counts["claims_report"] == 1


def test_lint_and_format():
    lint = subprocess.run(
        [*SNAKEMAKE, "--lint", "-s", str(ROOT / "Snakefile")], capture_output=True, text=True, cwd=ROOT
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], capture_output=True, text=True, cwd=ROOT
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
