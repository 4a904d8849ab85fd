"""Snakemake on a tiny config: a killed training job resumes, a bad config is rejected by the
schema before any job runs, the shipped configs resolve, lint and snakefmt are clean. The
whole DAG's outputs, a rerun with nothing to do and what a change reruns are checked on the
paper rehearsal (tests/test_rehearsal.py), which runs every rule once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from .faults import record
from .plans import planned_jobs

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def without_slurm_controller(env: dict) -> dict:
    """``env`` with a ``scontrol`` first on PATH that fails at once, for Snakemake runs that do
    not use SLURM. The SLURM executor plugin runs ``scontrol show config`` when Snakemake
    starts; on a machine with the SLURM client but no controller answering, that call waits
    9 s (its timeout) on every start, with or without SLURM in the command. Failing at once
    is what the plugin sees on a machine without SLURM. tests/test_slurm.py keeps the real one."""
    stub = Path(tempfile.gettempdir()) / f"leap-tests-no-slurm-{os.getuid()}"
    scontrol = stub / "scontrol"
    if not scontrol.exists():
        stub.mkdir(exist_ok=True)
        tmp = stub / f".scontrol.{os.getpid()}"
        tmp.write_text("#!/bin/sh\nexit 1\n")
        tmp.chmod(0o755)
        tmp.replace(scontrol)
    return env | {"PATH": f"{stub}{os.pathsep}{env.get('PATH', '')}"}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = without_slurm_controller(os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
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


def _job_processes(workdir: Path) -> list:
    """The job scripts Snakemake runs for ``workdir`` (their copies live in its .snakemake/scripts)."""
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if f"{workdir}/.snakemake/scripts" in cmd:
            out.append(p)
    return out


@pytest.mark.slow
def test_fault_the_driver_killed_mid_training_the_next_run_finishes_with_the_same_weights(tmp_path, tiny_models):
    """SIGKILL to `snakemake` itself while a student trains: its job stops within seconds, no
    output of the job is left, and a plain `snakemake` again (no --unlock: the killed run's
    locks are removed once no run is alive here; rerun-incomplete from the default profile)
    resumes from the checkpoint, and ends with the weights an uninterrupted training of the
    same run gives."""
    import signal
    import time

    import torch
    from safetensors.torch import load_file

    from leap.training.config import TrainConfig
    from leap.training.run import train
    from leap.workflow.data import read_sentences

    cfg = tiny_cfg(tiny_models)
    cfg["variants"] = {"main": ["leap"], "ablation": [], "sweep": [], "comparisons": []}
    cfg["training"] |= {"max_steps": 160, "checkpoint_steps": 20, "log_steps": 10}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "results/tiny/leap/seed0"
    target = "results/tiny/leap/seed0/train_config.json"
    args = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), target, "--cores", "1"]
    args += ["--configfile", str(config)]
    env = without_slurm_controller(os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not list((run_dir / "checkpoints").glob("checkpoint-*/leap_run.json")):
        assert first.poll() is None, f"workflow ended before a checkpoint: {first.stdout.read()[-3000:]}"
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    assert _job_processes(tmp_path), "training job process not found"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    stopped = time.time() + 30
    while _job_processes(tmp_path):
        assert time.time() < stopped, "the job outlived its run by 30 s"
        time.sleep(0.2)
    assert not (run_dir / "model").exists() and not (run_dir / "train_config.json").exists()  # no partial output
    assert list((tmp_path / ".snakemake/locks").iterdir()), "the killed run left its locks (what this test clears)"

    again = run([target, "--cores", "1", "--configfile", str(config)], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    log = (tmp_path / "results/tiny/logs/train/leap/seed0.log").read_text()
    assert "resuming from" in log and "checkpoint-" in log
    steps = [json.loads(l)["step"] for l in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(10, 161, 10))  # the log before the kill came back, nothing twice
    assert not (run_dir / "checkpoints").exists()
    # the same run, never stopped, from the same sentences and cache
    info = json.loads((run_dir / "train_config.json").read_text())
    keys = set(TrainConfig().to_dict())
    reference = train(
        TrainConfig.from_dict({k: v for k, v in info.items() if k in keys}),
        read_sentences(tmp_path / "results/tiny/data/sentences.parquet"),
        next((tmp_path / "results/tiny/teacher").iterdir()),
        tmp_path / "uninterrupted",
        teacher=tiny_models["mpnet"],
        progress_bar=False,
    )
    got, want = load_file(str(run_dir / "model/model.safetensors")), load_file(str(reference / "model.safetensors"))
    assert got.keys() == want.keys() and all(torch.allclose(got[k], want[k], atol=1e-6) for k in want), max(
        float((got[k] - want[k]).abs().max()) for k in want
    )
    record(
        "snakemake itself killed",
        "SIGKILL to the snakemake process while a student trains (checkpoints every 20 steps)",
        "the job stops within seconds; a plain `snakemake` again resumes from the last checkpoint (log: "
        f"{next(line for line in log.splitlines() if 'resuming from' in line).split(': ', 1)[1]})",
        "nothing: the killed run's locks are removed, the weights equal an uninterrupted run's within 1e-6",
    )


def run_with_a_second_run_at_once(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, ...]:
    """``run(args, cwd)``, and the same command started again in ``cwd`` once the first is
    running a job: ``(first, second)``."""
    import time

    env = without_slurm_controller(os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(cwd), *args]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not _job_processes(cwd):
        assert first.poll() is None and time.time() < deadline, "the first run started no job"
        time.sleep(0.05)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=600)
    return subprocess.CompletedProcess(cmd, first.returncode, out, err), second


@pytest.mark.slow
def test_a_run_in_parts_on_fresh_machines_redoes_only_what_is_missing_fault_two_runs_at_once(tmp_path, tiny_models):
    """keep_intermediates: false (the CPU config): each model, cache and data file is deleted
    once its readers are done; on a fresh machine (no .snakemake, no models, results as a
    checkout leaves them) `pending_runs` trains only the runs whose outputs are missing and
    the default target then writes the tables without training anything (`make cpu`).
    The first machine's part is seed 0 alone; the second machine holds its outputs as committed
    and must add seed 1, and nothing of seed 0. While it works, a second run in the same folder
    is refused in one line and does not disturb it (the fault of two runs at once)."""
    import time

    cfg = tiny_cfg(tiny_models) | {"keep_intermediates": False, "seeds": [0, 1], "published_models": []}
    cfg["variants"] = {"main": ["baseline"], "ablation": [], "sweep": [], "comparisons": []}
    cfg["data"]["qqp"] = None  # STS-B and BEIR are enough to show what a part redoes
    cfg["evaluation"]["retrieval_variants"] = ["baseline"]
    cfg["latency"]["variants"] = []
    config, first_part = tmp_path / "config.yaml", tmp_path / "first_part.yaml"
    config.write_text(yaml.safe_dump(cfg))
    first_part.write_text(yaml.safe_dump(cfg | {"seeds": [0]}))
    args = ["--cores", "1", "--configfile", str(config)]
    res = tmp_path / "results/tiny"

    def intermediates_gone(seeds: tuple[int, ...]) -> None:
        for seed in seeds:
            assert (res / f"baseline/seed{seed}/eval/stsb.json").exists()
            assert (res / f"baseline/seed{seed}/eval/beir_retrieval.json").exists()
            assert not (res / f"baseline/seed{seed}/model").exists()  # read by all its jobs: gone
        assert not list(res.glob("teacher/*/manifest.json")) and not (res / "data/sentences.parquet").exists()
        assert (res / "data/stats.json").exists()  # the report reads it: kept

    first = run(["pending_runs", "--cores", "1", "--configfile", str(first_part)], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    intermediates_gone((0,))
    assert not (res / "baseline/seed1").exists()

    # a fresh machine holding the first part as committed
    subprocess.run(["rm", "-rf", str(tmp_path / ".snakemake")], check=True)
    plan = jobs(run(["pending_runs", "-n", *args], tmp_path))
    assert plan["train_student"] == 1 and plan["eval_stsb"] == 1, plan
    committed = {f: f.stat().st_mtime_ns for f in (res / "baseline/seed0").rglob("*") if f.is_file()}
    second, refused = run_with_a_second_run_at_once(["pending_runs", *args], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    # a second run in the same folder while this one works: refused in one line, before any job
    lines = [line for line in refused.stderr.splitlines() if not line.startswith("Using workflow specific profile")]
    assert refused.returncode == 1 and len(lines) == 1 and "another snakemake run is working in" in lines[0], lines
    assert "Job stats" not in refused.stdout + refused.stderr  # not a single job planned, let alone run
    record(
        "two runs at once",
        "a second `snakemake` in the folder while the first trains",
        lines[0],
        "nothing: the first run goes on and finishes as it would alone",
    )
    assert {f: f.stat().st_mtime_ns for f in committed} == committed  # seed 0 as committed, not redone
    intermediates_gone((0, 1))

    subprocess.run(["rm", "-rf", str(tmp_path / ".snakemake")], check=True)
    now = time.time()
    for f in res.rglob("*"):  # one mtime for every result, as `make cpu` sets before each step
        os.utime(f, (now, now))
    final = jobs(run(["-n", *args], tmp_path))
    assert "tables" in final and "claims_report" in final, final
    assert not {"train_student", "teacher_cache", "extract_data", "eval_stsb", "eval_beir"} & set(final), final


@pytest.mark.workflow
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


@pytest.mark.workflow
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
    from leap.workflow.config import workflow_schema

    committed = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    assert committed == workflow_schema(), "run `python -m leap.workflow.config > config/schema.yaml`"


def test_rules_list_exactly_the_modules_their_scripts_import():
    from leap.workflow.dependencies import code_inputs

    teacher = {Path(p).name for p in code_inputs(ROOT, ROOT / "workflow_scripts/teacher_cache.py")}
    assert "teacher.py" in teacher and "run.py" not in teacher and "leap_loss.py" not in teacher
    train = {
        str(Path(p).relative_to(ROOT))
        for p in code_inputs(ROOT, ROOT / "workflow_scripts/train.py", "leap.training.losses.layerskip")
    }
    assert {"leap/training/teacher.py", "leap/training/run.py", "leap/training/losses/layerskip.py"} <= train
    assert "leap/workflow/evaluate.py" not in train and "leap/workflow/report.py" not in train


@pytest.mark.workflow
def test_paper_config_resolves_offline(tmp_path):
    proc = run(["-n", "--configfile", str(ROOT / "config/config.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = jobs(proc)
    planned = planned_jobs(ROOT / "config/config.yaml")
    assert {k: counts.get(k) for k in planned} == planned
    assert counts["claims_report"] == 1 and counts["frontier"] == 1
    # the paper's shape: 18 trained runs, 5 BEIR sets, QQP on (baseline, leap) x 3 seeds
    assert planned["train_student"] == 18 and planned["eval_qqp"] == 6 and planned["eval_beir"] % 5 == 0


@pytest.mark.workflow
def test_cpu_config_resolves(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    proc = run(["-n", "--configfile", str(ROOT / "config/cpu.yaml"), "--config", f"data_dir={data}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config_line = next(l for l in (proc.stdout + proc.stderr).splitlines() if "Config file(s)" in l)
    assert "cpu.yaml" in config_line and "demo.yaml" not in config_line  # replaced, not merged into the demo's
    counts = jobs(proc)
    planned = planned_jobs(ROOT / "config/cpu.yaml", data_dir=str(data))
    assert {k: counts.get(k) for k in planned} == planned
    assert planned["teacher_cache"] == 2  # all-mpnet-base-v2, and all-MiniLM-L6-v2 for self-distillation
    assert counts["latency_bench"] == counts["serving_paths"] == planned["latency_bench"]


@pytest.mark.workflow
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
    planned = planned_jobs(ROOT / "config/cpu.yaml", ROOT / "config/cpu_frontier.yaml", data_dir=str(data))
    assert {k: counts.get(k) for k in planned} == planned
    full = planned_jobs(ROOT / "config/cpu.yaml", data_dir=str(data))
    assert planned["train_student"] < full["train_student"] and planned["eval_beir"] < full["eval_beir"]
    assert counts["frontier"] == 1 and counts["claims_report"] == 1


@pytest.mark.workflow
def test_lint_and_format():
    lint = subprocess.run(
        [*SNAKEMAKE, "--lint", "-s", str(ROOT / "Snakefile")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=without_slurm_controller(dict(os.environ)),
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], capture_output=True, text=True, cwd=ROOT
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
