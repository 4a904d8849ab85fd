"""The workflow through profiles/slurm on a real single-node SLURM (localhost).

`.ci/run` brings the cluster up with `.ci/slurm-up.sh` (root, Debian packages); without
an idle SLURM node this test skips and says how to get one. The profile used is
profiles/slurm itself, with job states read with squeue (no slurmdbd here, so sacct cannot
answer) and faster polling.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import threading
import time

import pytest
import yaml

from tests.test_workflow import ROOT, SNAKEMAKE, tiny_cfg


@functools.cache
def _slurm_idle() -> str | None:
    """``None`` when an idle SLURM node answers, else why not (asked once: without a
    controller, ``sinfo`` waits for its timeout)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (sinfo/sbatch); run .ci/slurm-up.sh as root on Debian"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if "idle" not in proc.stdout.split():
        return f"no idle SLURM node (sinfo: {proc.stdout.strip() or proc.stderr.strip()}); run .ci/slurm-up.sh"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e .[dev])"
    return None


def write_profile(tmp_path, retries: int = 0) -> None:
    """profiles/slurm with the test-only changes (squeue for job states, local logs, fast polling,
    no retries) in tmp_path/profile. The profile names no software deployment: conda is the
    user's explicit ``--sdm conda``, and this machine has none."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert "software-deployment-method" not in profile
    profile |= {
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "slurm-logdir": str(tmp_path / "slurm-logs"),
        "slurm-keep-successful-logs": True,
        "latency-wait": 5,
        "retries": retries,
        "jobs": 4,
    }
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile/config.yaml").write_text(yaml.safe_dump(profile))


def slurm_command(tmp_path, limit_s: int, *args: str) -> list[str]:
    """Snakemake in ``tmp_path`` through the profile :func:`write_profile` wrote, killed after ``limit_s``."""
    workflow = ["-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
    profile = ["--workflow-profile", str(tmp_path / "profile")]
    return ["timeout", "-k", "10", str(limit_s), *SNAKEMAKE, *workflow, *profile, *args]


def _preempt_training(run_dir, stop: threading.Event, cancelled: list) -> None:
    """Once the student has a checkpoint, cancel its SLURM job (`scancel`), as a scheduler
    preempting it would; the job id goes to ``cancelled``."""
    while not stop.is_set():
        if list((run_dir / "checkpoints").glob("checkpoint-*/leap_run.json")):
            queue = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True).stdout
            ids = [line.split()[0] for line in queue.splitlines() if "rule_train_student" in line]
            if ids:
                subprocess.run(["scancel", ids[0]], check=True)
                cancelled.append(ids[0])
                return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, tiny_models) -> dict:
    """The tiny workflow through profiles/slurm, its training job cancelled once mid-run."""
    why = _slurm_idle()
    if why:
        pytest.skip(why)
    tmp_path = tmp_path_factory.mktemp("slurm")
    write_profile(tmp_path, retries=1)
    cfg = tiny_cfg(tiny_models)
    cfg["experiment"] = "slurm"
    # one trained variant through every stage (data, teacher, training, evaluation, latency,
    # frontier, tables, report): the SLURM plugin's status checks back off by 10 s each, so
    # every extra job costs wall time, not coverage
    cfg["variants"] = {"main": ["leap"]}
    cfg["published_models"] = []
    cfg["data"].pop("qqp")  # QQP and the serving paths are evaluations like STS-B: no other resources
    cfg["latency"]["serving_pairs"] = 0
    cfg["evaluation"]["retrieval_variants"] = ["leap"]
    cfg["latency"]["variants"] = ["leap"]
    cfg["training"] |= {"max_steps": 160, "checkpoint_steps": 20, "log_steps": 10}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))

    cmd = slurm_command(tmp_path, 900, "--configfile", str(tmp_path / "config.yaml"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    stop, cancelled = threading.Event(), []
    watcher = threading.Thread(target=_preempt_training, args=(tmp_path / "results/slurm/leap/seed0", stop, cancelled))
    watcher.start()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    finally:
        stop.set()
        watcher.join()
    return {"root": tmp_path, "proc": proc, "cancelled": cancelled}


@pytest.mark.slow
def test_tiny_workflow_through_slurm_profile(slurm_run):
    tmp_path, proc = slurm_run["root"], slurm_run["proc"]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    res = tmp_path / "results/slurm"
    assert (res / "claims.csv").exists()
    assert "Synthetic data" in (res / "report.md").read_text().splitlines()[2]  # the demo data, labelled
    assert json.loads((res / "leap/seed0/eval/stsb.json").read_text())["splits"]["test"]["n_pairs"] > 0
    assert "sbatch" in out or "SLURM" in out  # the jobs went through the executor
    logs = list((tmp_path / "slurm-logs").rglob("*.log"))
    assert any("train_student" in str(p) for p in logs), [str(p) for p in logs][:10]


@pytest.mark.slow
def test_fault_a_preempted_training_job_is_submitted_again_and_resumes_from_its_checkpoint(slurm_run, tiny_models):
    """`scancel` of the student's SLURM job after a checkpoint (a preemption): the profile's
    retry submits it again, the job resumes from the checkpoint, and the weights equal an
    uninterrupted training of the same run."""
    import torch
    from safetensors.torch import load_file

    from leap.training.config import TrainConfig
    from leap.training.run import train
    from leap.workflow.data import read_sentences
    from tests.faults import record

    tmp_path, proc = slurm_run["root"], slurm_run["proc"]
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert slurm_run["cancelled"], "the training job was never seen running with a checkpoint"
    run_dir = tmp_path / "results/slurm/leap/seed0"
    log = (tmp_path / "results/slurm/logs/train/leap/seed0.log").read_text()
    resumed = next(line for line in log.splitlines() if "resuming from" in line)
    steps = [json.loads(l)["step"] for l in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(10, 161, 10))  # nothing lost, nothing twice
    info = json.loads((run_dir / "train_config.json").read_text())
    keys = set(TrainConfig().to_dict())
    reference = train(
        TrainConfig.from_dict({k: v for k, v in info.items() if k in keys}),
        read_sentences(tmp_path / "results/slurm/data/sentences.parquet"),
        next((tmp_path / "results/slurm/teacher").iterdir()),
        tmp_path / "uninterrupted",
        teacher=tiny_models["mpnet"],
        progress_bar=False,
    )
    got, want = load_file(str(run_dir / "model/model.safetensors")), load_file(str(reference / "model.safetensors"))
    assert got.keys() == want.keys() and all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)
    record(
        "a SLURM job preempted",
        "`scancel` of the training job once it has a checkpoint, under profiles/slurm",
        f"the job is submitted again and resumes (log: {resumed.split(': ', 1)[1]})",
        "nothing: the weights equal an uninterrupted run's within 1e-6",
    )


@pytest.mark.slow
def test_paper_configuration_rehearsal_first_stages_through_slurm_profile(tmp_path):
    """The paper configuration with the rehearsal's overlay (tests/test_rehearsal.py): data
    extraction from the stand-in Hub (a local rule: downloads run where the network is) and
    the teacher cache as a SLURM job."""
    from tests.hub_fixtures import beir_checksums, build_hub, build_models
    from tests.hub_stub import HubStub
    from tests.test_rehearsal import overlay

    why = _slurm_idle()
    if why:
        pytest.skip(why)
    write_profile(tmp_path)
    hub, models = build_hub(tmp_path / "hub"), build_models(tmp_path / "models")
    offline = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in offline}
    with HubStub(hub) as url:
        (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay(models, url, beir_checksums(hub))))
        targets = ["results/paper/data/stats.json", "results/paper/teacher/teacher/manifest.json"]
        configs = ["--configfile", str(ROOT / "config/config.yaml"), str(tmp_path / "overlay.yaml")]
        cmd = slurm_command(tmp_path, 600, *configs, "--", *targets)
        run_env = env | {"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf")}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    stats = json.loads((tmp_path / targets[0]).read_text())
    assert stats["written"] > 0 and "stanfordnlp/snli" in stats["hub_revisions"]
    logs = [str(p) for p in (tmp_path / "slurm-logs").rglob("*.log")]
    assert any("teacher_cache" in p for p in logs), logs[:10]  # extraction is a local rule (downloads)
