"""The paper's configuration, rehearsed: `config/config.yaml` with one small overlay runs every
rule of its DAG to the report, offline, with every data source still `hub:`.

What the overlay changes (and nothing else): tiny random models of the same architectures and
depths stand in for the teacher, the student init and the published checkpoints
(tests/hub_fixtures.py: `build_models`); a few hundred sentences, two training steps, one seed;
CPU and fp32 instead of the GPU settings; the BEIR download URL points at the stand-in server.
The Hub itself is tests/hub_stub.py: `HF_ENDPOINT` points every job at it, so the jobs'
`datasets.load_dataset(repo, config, split=..., revision=...)` calls go through the real
client code and only the HTTP answers are stand-ins (hub_fixtures.HUB: each dataset's
configurations, splits, columns, dtypes and label encodings, with where each came from).

What only a real GPU and the real Hub can show: fp16 training and float16 latency, the 24-layer
teacher's memory and time, the Hub's current files (a new commit can rename a column; pin
data.revisions), and BEIR's download server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .hub_fixtures import BEIR, HUB, build_hub, build_models
from .hub_stub import HubStub, commit_of

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rehearsal")]


def overlay(models: dict[str, str], hub_url: str) -> dict:
    """The rehearsal's overlay on config/config.yaml (merged key by key by Snakemake)."""
    paper = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    sets = ["arguana", "nfcorpus", "scifact", "scidocs"]  # one BEIR set each (every set still loads)
    published = [
        {**m, "model": models[m["model"]], "retrieval_sets": [s]} for m, s in zip(paper["published_models"], sets)
    ]
    return {
        "threads": 1,
        "gpu": False,
        "seeds": [0],
        # one variant of each trained group beside the main pair: every rule still runs, in half the jobs
        "variants": {**paper["variants"], "ablation": ["abl_exit"], "sweep": ["beta0.4"]},
        "data": {"max_sentences": 300, "beir_url": hub_url + "/beir/{name}.zip", "retrieval_dev_queries": 5},
        "teacher": {
            "model": models[paper["teacher"]["model"]],
            "batch_size": 32,
            "shard_size": 128,
            "dtype": None,
        },
        "training": {
            "student": models[paper["training"]["student"]],
            "batch_size": 8,
            "max_steps": 2,
            "precision": "fp32",
            "max_seq_length": 32,
            "checkpoint_steps": 1,
            "log_steps": 1,
        },
        "sweep": {"max_samples": 64, "epochs": 1},
        "evaluation": {"device": "cpu", "batch_size": 32, "layer_sentences": 60, "retrieval_variants": ["leap"]},
        "latency": {
            "device": "cpu",
            "dtype": None,
            "warmup": 1,
            "iters": 2,
            "rounds": 1,
            "batch_sizes": [1, 4],
            "serving_pairs": 0,  # the serving paths are timed on CPU only: not in the paper's (GPU) DAG
        },
        "published_models": published,
        "diagnostic": {"overhead_iters": 2},
    }


def snakemake(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(cwd), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)


def rules_of(output: str) -> set[str]:
    """The rule names of the jobs a Snakemake run started (its 'rule X:' lines)."""
    return set(re.findall(r"^\s*(?:local)?rule (\w+):", output, flags=re.M))


def planned_rules(output: str) -> set[str]:
    """The rule names in a dry run's job-stats table."""
    stats = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    names = {line.split()[0] for line in stats.splitlines() if line.strip()}
    return {n for n in names if re.fullmatch(r"[A-Za-z_]\w*", n)} - {"job", "total"}


def test_the_paper_configuration_runs_every_rule_on_hub_shaped_stand_ins(tmp_path):
    hub = build_hub(tmp_path / "hub")
    models = build_models(tmp_path / "models")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    dry = snakemake(["-n"], tmp_path / "dry", env | {"HF_HUB_OFFLINE": "1"})
    assert dry.returncode == 0, dry.stderr[-2000:]
    want = planned_rules(dry.stdout + dry.stderr)
    stub = HubStub(hub)
    with stub as url:
        cfg = tmp_path / "overlay.yaml"
        cfg.write_text(yaml.safe_dump(overlay(models, url)))
        run_env = env | {"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        work = tmp_path / "run"
        args = ["--cores", "2", "--configfile", str(ROOT / "config/config.yaml"), str(cfg)]
        proc = snakemake(args, work, run_env)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    ran = rules_of(proc.stdout + proc.stderr)
    assert ran == want, f"not run: {sorted(want - ran)}; not in the paper DAG: {sorted(ran - want)}"
    res = work / "results/paper"
    stats = json.loads((res / "data/stats.json").read_text())
    assert stats["hub_revisions"] == {repo: commit_of(repo) for repo in HUB}  # one commit per repo, recorded
    assert {p for _, p in stub.requests if p.startswith("/beir/")} == {f"/beir/{n}.zip" for n in BEIR}
    assert not any("resolve" in p and "/models/" in p for _, p in stub.requests)  # no model from the Hub
    report = (res / "report.md").read_text()
    assert "plain transformers checkpoint" in report and "TinyBERT_General_6L_768D" in report
    assert json.loads((res / "tables/index.json").read_text())


SHARED = ROOT.parent / "shared" / "data" / "beir"


@pytest.mark.skipif(not SHARED.is_dir(), reason="no local copy of the BEIR sets (../shared/data/beir)")
@pytest.mark.parametrize("name", ["scifact", "nfcorpus"])
def test_beir_stand_ins_have_the_layout_of_the_real_files(tmp_path, name):
    """Files, JSON keys, qrels header and id style of a stand-in zip against the real set."""
    import zipfile

    build_hub(tmp_path)
    real = SHARED / name
    with zipfile.ZipFile(tmp_path / "beir" / f"{name}.zip") as z:
        members = {m.removeprefix(f"{name}/") for m in z.namelist()}
        fake_doc = json.loads(z.read(f"{name}/corpus.jsonl").decode().splitlines()[0])
        fake_query = json.loads(z.read(f"{name}/queries.jsonl").decode().splitlines()[0])
        fake_qrels = z.read(f"{name}/qrels/test.tsv").decode().splitlines()
    want = {"corpus.jsonl", "queries.jsonl", *(f"qrels/{p.name}" for p in (real / "qrels").glob("*.tsv"))}
    assert members == want
    doc = json.loads((real / "corpus.jsonl").open(encoding="utf-8").readline())
    query = json.loads((real / "queries.jsonl").open(encoding="utf-8").readline())
    assert set(fake_doc) == set(doc) - {"metadata"} | {"metadata"} and set(fake_query) == set(query)
    qrels = (real / "qrels/test.tsv").read_text(encoding="utf-8").splitlines()
    assert fake_qrels[0] == qrels[0] == "query-id\tcorpus-id\tscore"
    real_q, real_d = qrels[1].split("\t")[:2]
    fake_q, fake_d = fake_qrels[1].split("\t")[:2]
    assert real_q.isdigit() == fake_q.isdigit() and real_d.isdigit() == fake_d.isdigit()
