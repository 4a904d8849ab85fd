"""benchmarks/run_cost.py: the README's cost table, with paused seconds reported apart."""

from __future__ import annotations

from .benchmark_scripts import load_benchmark

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
    rc = load_benchmark("run_cost")
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
    assert "first job start to last job end 20.0 min; paused 4.0 min, idle 4.0 min: 16.0 min of running" in table
    assert "| train | 1 | 20.0 min | 4.0 min | 10.0 min |" in table and "| all | 2 | 25.0 min |" in table


HELPER = """[Thu Dec  3 10:11:00 2026]
localrule latency_bench:
    jobid: 3
    benchmark: results/x/benchmarks/latency/leap/seed0.tsv
[Thu Dec  3 10:13:00 2026]
Finished jobid: 3 (Rule: latency_bench)
"""

PART2 = """[Thu Dec  3 12:00:00 2026]
localrule eval_beir:
    jobid: 4
    benchmark: results/x/benchmarks/eval_beir/leap/seed0/scifact.tsv
[Thu Dec  3 12:06:00 2026]
Finished jobid: 4 (Rule: eval_beir)
"""


def test_a_run_in_parts_leaves_out_the_gap_and_a_job_timed_during_a_pause_is_not_paused(tmp_path):
    rc = load_benchmark("run_cost")
    res = tmp_path / "results/x"
    for rel, wall in (
        ("train/leap/seed0.tsv", 1200.0),
        ("eval_stsb/leap/seed0.tsv", 300.0),
        ("latency/leap/seed0.tsv", 120.0),
        ("eval_beir/leap/seed0/scifact.tsv", 360.0),
    ):
        f = res / "benchmarks" / rel
        f.parent.mkdir(parents=True)
        f.write_text(f"s\th:m:s\tcpu_time\n{wall}\t0:00:00\t{wall}\n")
    logs = [tmp_path / n for n in ("part1.log", "helper.log", "part2.log")]
    for path, text in zip(logs, (LOG, HELPER, PART2)):
        path.write_text(text)
    start = rc._time("Thu Dec  3 10:10:00 2026")  # the run stopped 10:10-10:14; the latency job ran 10:11-10:13
    iso = [rc.dt.datetime.fromtimestamp(t, rc.dt.timezone.utc).isoformat() for t in (start, start + 240)]
    (tmp_path / "pauses.log").write_text(f"pause_start {iso[0]} timing\npause_end {iso[1]}\n")

    costs = rc.stage_costs(res, logs, tmp_path / "pauses.log")
    run = costs["run"]
    assert len(run["parts"]) == 2  # the helper lies inside part 1; part 2 starts after a gap
    assert run["wall_s"] == 1200.0 + 360.0  # 10:00-10:20 and 12:00-12:06, not 10:00-12:06
    assert (run["paused_s"], run["paused_busy_s"], run["idle_s"]) == (240.0, 120.0, 120.0)
    evaluate = costs["stages"]["evaluate"]
    assert evaluate["jobs"] == 3 and evaluate["paused_s"] == 0.0  # the latency job ran during the pause
    assert costs["stages"]["train"]["paused_s"] == 240.0  # the training stood still through it
    table = rc.markdown(costs)
    assert "2 parts, first job start to last job end 26.0 min, the gaps between parts left out" in table
    assert "paused 4.0 min (2.0 min of it running jobs of a command started during a pause), idle 2.0 min" in table
    assert "24.0 min of running" in table


def test_a_job_started_in_the_same_second_as_a_pause_is_paused_and_not_running(tmp_path):
    """Snakemake stamps a job's start to the second and the pause log to the second: a job of
    the run that starts as the run is stopped stands still with it, in the job row and in the
    run's idle time alike."""
    rc = load_benchmark("run_cost")
    res = tmp_path / "results/x"
    f = res / "benchmarks" / "latency/leap/seed0.tsv"
    f.parent.mkdir(parents=True)
    f.write_text("s\th:m:s\tcpu_time\n300.0\t0:05:00\t300.0\n")
    (tmp_path / "run.log").write_text(
        "[Thu Dec  3 10:00:00 2026]\nlocalrule latency_bench:\n    jobid: 3\n"
        "    benchmark: results/x/benchmarks/latency/leap/seed0.tsv\n"
        "[Thu Dec  3 10:05:00 2026]\nFinished jobid: 3 (Rule: latency_bench)\n"
    )
    start = rc._time("Thu Dec  3 10:00:00 2026")  # stopped in the job's first second, for 2 minutes
    iso = [rc.dt.datetime.fromtimestamp(t, rc.dt.timezone.utc).isoformat() for t in (start, start + 120)]
    (tmp_path / "pauses.log").write_text(f"pause_start {iso[0]} test\npause_end {iso[1]}\n")

    costs = rc.stage_costs(res, [tmp_path / "run.log"], tmp_path / "pauses.log")
    assert costs["stages"]["evaluate"]["paused_s"] == 120.0
    run = costs["run"]
    assert (run["paused_s"], run["paused_busy_s"], run["idle_s"]) == (120.0, 0.0, 120.0)
