"""Snakemake on a tiny config: outputs exist and parse, a rerun has nothing to do, a bad
config is rejected by the schema before any job runs, lint and snakefmt are clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(cwd), *args],
        capture_output=True, text=True, env=env, timeout=600,
    )


@pytest.fixture
def tiny_config(tmp_path, tiny_models) -> Path:
    cfg = {
        "experiment": "tiny",
        "threads": 1,
        "published_models": [{"name": "tiny-bert", "model": tiny_models["bert"]},
                             {"name": "tiny-mpnet", "model": tiny_models["mpnet"]}],
        "diagnostic": {"theta": 0.95, "patience": 1, "min_layer": 3, "overhead_iters": 2},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_tiny_workflow_runs_and_is_idempotent(tmp_path, tiny_config):
    proc = run(["--cores", "2", "--configfile", str(tiny_config)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results/tiny/tables/table2_cross_distillation.csv")
    assert table["Model"].tolist() == ["tiny-bert", "tiny-mpnet"]
    assert set(table["Verdict"]) <= {"compatible", "incompatible"}
    assert (tmp_path / "results/tiny/tables/table2_cross_distillation.md").read_text().startswith("| Model |")
    for name in ("tiny-bert", "tiny-mpnet"):
        assert (tmp_path / f"results/tiny/logs/diagnose_published/{name}.log").exists()
        assert (tmp_path / f"results/tiny/benchmarks/diagnose_published/{name}.tsv").exists()
    again = run(["--cores", "2", "--configfile", str(tiny_config), "-n"], tmp_path)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"unknown_key": 1}, "Additional properties are not allowed ('unknown_key' was unexpected)"),
        ({"threads": "two"}, "'two' is not of type 'integer'"),
        ({"diagnostic": {"theta": 3}}, "3 is greater than the maximum of 1"),
    ],
)
def test_bad_config_rejected_by_schema(tmp_path, tiny_config, patch, message):
    cfg = yaml.safe_load(tiny_config.read_text()) | patch
    tiny_config.write_text(yaml.safe_dump(cfg))
    proc = run(["--cores", "1", "--configfile", str(tiny_config), "-n"], tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_paper_config_resolves_offline(tmp_path):
    proc = run(["-n", "--configfile", str(ROOT / "config/config.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "diagnose_published" in proc.stdout + proc.stderr


def test_lint_and_format():
    lint = subprocess.run([*SNAKEMAKE, "--lint", "-s", str(ROOT / "Snakefile")], capture_output=True, text=True, cwd=ROOT)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], capture_output=True, text=True, cwd=ROOT)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
