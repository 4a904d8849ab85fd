"""The paper's configuration, rehearsed: `config/config.yaml` with one small overlay runs every
rule of its DAG to the report, offline, with every data source still `hub:`.

What the overlay changes (and nothing else): tiny random models of the same architectures and
depths stand in for the teacher, the student init and the published checkpoints
(tests/hub_fixtures.py: `build_models`); a few hundred sentences, two training steps, one seed,
one variant each of the ablation and the sweep, fewer BEIR evaluations;
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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .hub_fixtures import BEIR, HUB, beir_checksums, build_hub, build_models
from .hub_stub import HubStub, commit_of
from .plans import plan_of, planned_jobs, retrained
from .test_workflow import jobs, without_slurm_controller

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
pytestmark = pytest.mark.slow  # one module: pytest -n 2 --dist loadscope keeps its tests, and their runs, on one worker


def overlay(models: dict[str, str], hub_url: str, checksums: dict[str, str]) -> dict:
    """The rehearsal's overlay on config/config.yaml (merged key by key by Snakemake);
    ``checksums``: the stand-in BEIR zips' (:func:`tests.hub_fixtures.beir_checksums`)."""
    paper = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    # retrieval on one BEIR set for the first checkpoint, none for the others (`retrieval: false`):
    # every architecture still runs its diagnostic and STS-B, and leap's runs load every set
    first, *others = paper["published_models"]
    published = [
        {**first, "model": models[first["model"]], "retrieval_sets": ["arguana"]},
        *({**m, "model": models[m["model"]], "retrieval": False} for m in others),
    ]
    return {
        "threads": 1,
        "gpu": False,
        "seeds": [0],
        # one variant of each trained group beside the main pair: every rule still runs, in half the jobs
        "variants": {**paper["variants"], "ablation": ["abl_exit"], "sweep": ["beta0.4"]},
        "data": {
            "max_sentences": 300,
            "beir_url": hub_url + "/beir/{name}.zip",
            "beir_checksums": checksums,
            "retrieval_dev_queries": 5,
        },
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


def extras(overlay_: dict, models: dict[str, str]) -> dict:
    """A third config file on top of the rehearsal: what this project adds to the paper's DAG.
    LEAP-XD beside the main pair (QQP, the claims repeated for it), a published checkpoint
    exit-enabled with fitted maps (STS-B and retrieval), and the serving paths timed on CPU. Every job of
    the paper run is reused; only these jobs and the summaries that read them run."""
    minilm = "sentence-transformers/all-MiniLM-L6-v2"
    maps = {"name": "all-MiniLM-L6-v2-maps", "model": models[minilm], "fit_maps": 100, "retrieval_sets": ["scifact"]}
    return {
        "variants": {"main": ["baseline", "leap", "leap_xd"]},
        # the serving paths of one model (a latency setting: its latency job runs again)
        "latency": {"variants": ["leap"], "serving_pairs": 30, "serving_thetas": [0.9], "serving_batch_sizes": [1]},
        "published_models": [*overlay_["published_models"], maps],
    }


@dataclass
class Rehearsal:
    """The rehearsal's two runs in one folder, kept for every test of this module."""

    work: Path
    want: set[str]  # the rules of the paper configuration's dry run
    paper: subprocess.CompletedProcess  # config.yaml + overlay
    whole: subprocess.CompletedProcess | None  # + extras, in the same folder
    configs: list[str]
    env: dict
    requests: list
    extras: dict

    @property
    def results(self) -> Path:
        return self.work / "results/paper"

    def snakemake(self, *args: str, configs: list[str] | None = None) -> subprocess.CompletedProcess:
        return snakemake([*args, "--configfile", *(configs or self.configs)], self.work, self.env)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> Rehearsal:
    """Run the paper configuration (config.yaml + :func:`overlay`), then the same folder with
    :func:`extras` on top, against the stand-in Hub (up for the module's tests)."""
    tmp = tmp_path_factory.mktemp("rehearsal")
    hub = build_hub(tmp / "hub")
    models = build_models(tmp / "models")
    env = without_slurm_controller({k: v for k, v in os.environ.items() if k not in OFFLINE_VARS})
    dry = snakemake(["-n"], tmp / "dry", env | {"HF_HUB_OFFLINE": "1"})
    assert dry.returncode == 0, dry.stderr[-2000:]
    stub = HubStub(hub)
    with stub as url:
        over = overlay(models, url, beir_checksums(hub))
        (tmp / "overlay.yaml").write_text(yaml.safe_dump(over))
        more = extras(over, models)
        (tmp / "extras.yaml").write_text(yaml.safe_dump(more))
        run_env = env | {"HF_ENDPOINT": url, "HF_HOME": str(tmp / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        work = tmp / "run"
        paper_configs = [str(ROOT / "config/config.yaml"), str(tmp / "overlay.yaml")]
        paper = snakemake(["--cores", "2", "--configfile", *paper_configs], work, run_env)
        configs = [*paper_configs, str(tmp / "extras.yaml")]
        whole = snakemake(["--cores", "2", "--configfile", *configs], work, run_env) if paper.returncode == 0 else None
        yield Rehearsal(
            work, planned_rules(dry.stdout + dry.stderr), paper, whole, configs, run_env, stub.requests, more
        )


def test_the_paper_configuration_runs_every_rule_on_hub_shaped_stand_ins(rehearsal):
    proc = rehearsal.paper
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    ran, want = rules_of(proc.stdout + proc.stderr), rehearsal.want
    assert ran == want, f"not run: {sorted(want - ran)}; not in the paper DAG: {sorted(ran - want)}"
    res = rehearsal.results
    stats = json.loads((res / "data/stats.json").read_text())
    assert stats["hub_revisions"] == {repo: commit_of(repo) for repo in HUB}  # one commit per repo, recorded
    assert not stats["synthetic"]
    assert {p for _, p in rehearsal.requests if p.startswith("/beir/")} == {f"/beir/{n}.zip" for n in BEIR}
    assert not any("resolve" in p and "/models/" in p for _, p in rehearsal.requests)  # no model from the Hub
    report = (res / "report.md").read_text()
    assert "plain transformers checkpoint" in report and "TinyBERT_General_6L_768D" in report
    assert "Synthetic data" not in report
    assert json.loads((res / "tables/index.json").read_text())


def whole_run(rehearsal: Rehearsal) -> Path:
    proc = rehearsal.whole
    assert proc is not None, "the paper run failed (see the test above)"
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return rehearsal.results


def test_the_extras_reuse_every_paper_job_and_run_only_their_own(rehearsal):
    whole_run(rehearsal)
    ran = rules_of(rehearsal.whole.stdout + rehearsal.whole.stderr)
    assert {"exit_enable_published", "serving_paths", "train_student", "eval_qqp", "eval_beir"} <= ran
    assert not {"extract_data", "teacher_cache", "diagnose_published"} & ran
    out = rehearsal.whole.stdout + rehearsal.whole.stderr
    trained = re.findall(r"rule train_student:.*?wildcards: variant=(\w+)", out, flags=re.S)
    assert trained == ["leap_xd"]


def test_every_output_of_the_whole_dag_exists_and_parses(rehearsal):
    res = whole_run(rehearsal)
    published = [m["name"] for m in rehearsal.extras["published_models"] if not m.get("fit_maps")]
    table = pd.read_csv(res / "tables/table2_cross_distillation.csv")
    assert table["Model"].tolist() == published
    assert set(table["Verdict"]) <= {"compatible", "incompatible"}
    assert [p.name for p in (res / f"published/{published[0]}/eval").glob("beir_*.json")] == ["beir_arguana.json"]
    assert not list(res.glob(f"published/{published[1]}/eval/beir_*.json"))  # retrieval: false
    for v in ("baseline", "leap", "abl_exit", "beta0.4", "fixed_depth", "adaptive_layer", "layerskip"):
        run_dir = res / v / "seed0"
        assert (run_dir / "model" / "modules.json").exists()
        assert json.loads((run_dir / "eval/stsb.json").read_text())["splits"]["test"]["n_pairs"] > 0
        assert (run_dir / "eval/layers.json").exists() and (run_dir / "train_log.jsonl").read_text()
    assert (res / "leap_xd/seed0/model/layer_maps.safetensors").exists()
    assert json.loads((res / f"published/{published[0]}/eval/stsb.json").read_text())["splits"]["test"]["frontier"]
    # a published checkpoint exit-enabled with fitted maps: its own folder, evaluated like a run, no diagnostic
    maps = res / "published/all-MiniLM-L6-v2-maps"
    assert (maps / "model/layer_maps.safetensors").exists()
    assert json.loads((maps / "eval/stsb.json").read_text())["layer_maps"] is True
    assert json.loads((maps / "eval/beir_scifact.json").read_text())["full"]["NDCG@10"] >= 0  # retrieval with maps
    assert not (maps / "eval/diagnostic.json").exists()
    frontier = pd.read_csv(res / "tables/frontier.csv")
    assert {f"published:{published[0]}", "published:all-MiniLM-L6-v2-maps", "leap_xd", "fixed_depth"} <= set(
        frontier["model"]
    )
    assert {"common_depth", "oracle"} <= set(frontier["rule"])
    assert {"STS-B", "scifact", "scifact (query-only)"} <= set(frontier["benchmark"])
    assert (res / "figures/fig3_frontier_scifact_query_only.png").exists()
    summary = pd.read_csv(res / "tables/frontier_summary.csv")
    assert "oracle_advantage_at_bar" in summary and not summary["best_at"].fillna("").str.startswith("oracle").any()
    mixing = pd.read_csv(res / "tables/table_layer_mixing.csv")
    assert {"STS-B", "scifact"} <= set(mixing["Benchmark"]) and "Contrast (dev-chosen)" in mixing
    prov = json.loads((res / "provenance.json").read_text())
    assert len(prov["commit"]) == 40 and isinstance(prov["consistent"], bool) and prov["machine"]["cores"] >= 1
    assert {"train", "evaluate"} <= set(prov["stages"]) and len(prov["commands"]) == 2  # both runs
    assert "## Provenance" in (res / "report.md").read_text()
    assert (res / "figures/fig3_frontier_sts_b.png").exists() and (res / "figures/fig3_frontier_scifact.png").exists()
    assert "exit advantage" in (res / "leap/seed0/model_card.md").read_text().lower()
    qqp = json.loads((res / "baseline/seed0/eval/qqp.json").read_text())["splits"]["test"]
    assert 0 <= qqp["ap_full"] <= 1 and not (res / "abl_exit/seed0/eval/qqp.json").exists()  # main models only
    assert (res / "leap_xd/seed0/eval/qqp.json").exists()
    assert "QQP AP (exit)" in pd.read_csv(res / "tables/table1_main.csv").columns
    assert json.loads((res / "deebert/seed0/eval/stsb_heads.json").read_text())["test"]["spearman_exit"] is not None
    assert json.loads((res / "leap/seed0/eval/latency.json").read_text())["rows"][0]["batch_size"] == 1
    from leap.workflow.records import record_type

    typed = [(p, record_type(p.stem)) for p in res.rglob("eval/*.json") if record_type(p.stem)]
    assert {p.stem for p, _ in typed} >= {"stsb", "qqp", "layers", "latency", "stsb_heads", "beir_scifact"}
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
    assert index["table12_beta"] == "written"
    for name, state in index.items():
        if state == "written":
            assert not pd.read_csv(res / f"tables/{name}.csv").empty
    assert (res / "figures/fig1_layer_dynamics.png").stat().st_size > 1000
    claims = pd.read_csv(res / "claims.csv")
    assert list(claims.columns[:5]) == ["claim", "paper", "measured", "unit", "verdict"]
    assert set(claims["variant"].dropna()) == {"leap", "leap_xd"}  # LEAP claims repeated for the extra objective
    report = (res / "report.md").read_text()
    assert report.index("## The frontier") < report.index("## Claims")
    assert (res / "logs/train/leap/seed0.log").exists() and (res / "benchmarks/train/leap/seed0.tsv").exists()


def test_a_finished_run_has_nothing_to_do_and_its_html_report_holds_every_item(rehearsal):
    whole_run(rehearsal)
    again = rehearsal.snakemake("--cores", "2", "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # Snakemake's own HTML report holds every table and figure of the run, captioned
    page_path = rehearsal.work / "report.html"
    html = rehearsal.snakemake("--report", str(page_path))
    assert html.returncode == 0, html.stderr[-3000:]
    page = page_path.read_text(encoding="utf-8", errors="replace")
    from leap.workflow.results import FIGURE_NAMES, TABLE_NAMES

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


def test_one_changed_setting_reruns_only_its_chain(rehearsal, tmp_path):
    whole_run(rehearsal)
    cfg = dict(rehearsal.extras)
    changed = tmp_path / "changed.yaml"

    def dry() -> tuple[dict[str, int], set[tuple[str, int]]]:
        """The dry run's job counts, and the runs the plan says the change retrains."""
        changed.write_text(yaml.safe_dump(cfg))
        after = [*rehearsal.configs, str(changed)]
        counts = jobs(rehearsal.snakemake("--cores", "2", "-n", configs=after))
        return counts, retrained(rehearsal.configs, after)

    # change one variant's parameter: only that variant's chain (and the report) reruns
    cfg["variant_overrides"] = {"fixed_depth": {"n_layers": 7}, "layerskip": {"lr": 1e-4}}
    counts, runs = dry()
    assert {v for v, _ in runs} == {"layerskip"} and counts.get("train_student") == len(runs), counts
    assert counts.get("eval_stsb") == len(runs) and "eval_qqp" not in counts  # layerskip is not a main variant
    assert "teacher_cache" not in counts and "extract_data" not in counts and "diagnose_published" not in counts

    # a new variant of the same shape (init, depth, layer map) trains without rebuilding the cache
    cfg["variants"] = {**cfg["variants"], "ablation": ["abl_exit", "abl_final"]}
    counts, runs = dry()
    assert {v for v, _ in runs} == {"layerskip", "abl_final"} and counts.get("train_student") == len(runs)
    assert "teacher_cache" not in counts

    # a variant that reads only the teacher's final layer (no L_inter) changes its depth
    # without rebuilding the cache (that depth's layer map is never read)
    cfg["variant_overrides"]["leap_xd"] = {"n_layers": 3, "loss": {"layer_map": None}}
    counts, runs = dry()
    assert "leap_xd" in {v for v, _ in runs} and counts.get("train_student") == len(runs)
    assert "teacher_cache" not in counts

    # an edit of leap/training/teacher.py reruns the cache and what reads it, nothing else
    # (Snakemake compares input checksums, so the edit is a real one, undone at once)
    teacher_py = ROOT / "leap" / "training" / "teacher.py"
    original, stat = teacher_py.read_bytes(), teacher_py.stat()
    try:
        teacher_py.write_bytes(original + b"# edited by test_rehearsal\n")
        counts, _ = dry()
    finally:  # the checkout as it was, its time stamp too: a later run in it must not see an edit
        teacher_py.write_bytes(original)
        os.utime(teacher_py, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    planned = planned_jobs(*rehearsal.configs, str(changed))  # every trained run reads the cache
    assert counts.get("teacher_cache") == 1 and counts.get("train_student") == planned["train_student"], counts
    assert "extract_data" not in counts and "diagnose_published" not in counts
    plan = plan_of(*rehearsal.configs, str(changed))  # the trained runs' STS-B, not the published checkpoints'
    trained_stsb = [f for f in plan.all_evals if f.endswith("/stsb.json") and "/published/" not in f]
    assert counts.get("eval_stsb") == len(trained_stsb) and counts.get("eval_qqp") == planned["eval_qqp"]


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
