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


def write_profile(tmp_path) -> None:
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
        "retries": 0,
        "jobs": 4,
    }
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile/config.yaml").write_text(yaml.safe_dump(profile))


def slurm_command(tmp_path, limit_s: int, *args: str) -> list[str]:
    """Snakemake in ``tmp_path`` through the profile :func:`write_profile` wrote, killed after ``limit_s``."""
    workflow = ["-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
    profile = ["--workflow-profile", str(tmp_path / "profile")]
    return ["timeout", "-k", "10", str(limit_s), *SNAKEMAKE, *workflow, *profile, *args]


@pytest.mark.slow
def test_tiny_workflow_through_slurm_profile(tmp_path, tiny_models):
    why = _slurm_idle()
    if why:
        pytest.skip(why)
    write_profile(tmp_path)
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
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))

    cmd = slurm_command(tmp_path, 900, "--configfile", str(tmp_path / "config.yaml"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
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
