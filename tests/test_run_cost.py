"""benchmarks/run_cost.py: the README's cost table, with paused seconds reported apart."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_run_cost():
    spec = importlib.util.spec_from_file_location("run_cost", ROOT / "benchmarks/run_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOG = """[Thu Dec  3 10:00:00 2026]
localrule train_student:
    jobid: 7
    benchmark: results/x/benchmarks/train/leap/seed0.tsv
    wildcards: variant=leap, seed=0
[Thu Dec  3 10:00:00 2026]
localrule eval_stsb:
    jobid: 9
    benchmark: results/x/benchmarks/eval_stsb/leap/seed0.tsv
[Thu Dec  3 10:05:00 2026]
Finished jobid: 9 (Rule: eval_stsb)
[Thu Dec  3 10:20:00 2026]
Finished jobid: 7 (Rule: train_student)
"""


def test_paused_seconds_of_each_job_are_its_overlap_with_the_pauses(tmp_path):
    rc = load_run_cost()
    res = tmp_path / "results/x"
    for rel, wall in (("train/leap/seed0.tsv", 1200.0), ("eval_stsb/leap/seed0.tsv", 300.0)):
        f = res / "benchmarks" / rel
        f.parent.mkdir(parents=True)
        f.write_text(f"s\th:m:s\tcpu_time\n{wall}\t0:00:00\t{wall / 2}\n")
    (tmp_path / "snakemake.log").write_text(LOG)
    start = rc._time("Thu Dec  3 10:10:00 2026")  # a 4-minute pause while only the training ran
    iso = [rc.dt.datetime.fromtimestamp(t, rc.dt.timezone.utc).isoformat() for t in (start, start + 240)]
    (tmp_path / "pauses.log").write_text(f"pause_start {iso[0]} pgid 1\npause_end {iso[1]}\n")

    costs = rc.stage_costs(res, [tmp_path / "snakemake.log"], tmp_path / "pauses.log")
    train, evaluate = costs["stages"]["train"], costs["stages"]["evaluate"]
    assert (train["jobs"], train["wall_s"], train["paused_s"], train["cpu_s"]) == (1, 1200.0, 240.0, 600.0)
    assert (evaluate["wall_s"], evaluate["paused_s"]) == (300.0, 0.0)  # it ended before the pause
    assert costs["run"]["wall_s"] == 1200.0 and costs["run"]["paused_s"] == 240.0  # 10:00 to 10:20
    table = rc.markdown(costs)
    assert "20.0 min, of which 4.0 min paused: 16.0 min of running" in table
    assert "| train | 1 | 20.0 min | 4.0 min | 10.0 min |" in table and "| all | 2 | 25.0 min |" in table
