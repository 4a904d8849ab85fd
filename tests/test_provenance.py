"""What a run's provenance record says about the config files it read."""

from __future__ import annotations

import json

from leap.workflow.provenance import file_sha256, record_invocation


def test_config_files_inside_the_repository_are_recorded_by_relative_path(tmp_path):
    root, outside = tmp_path / "repo", tmp_path / "elsewhere"
    (root / "config").mkdir(parents=True)
    outside.mkdir()
    inside_cfg, outside_cfg = root / "config/cpu.yaml", outside / "extra.yaml"
    inside_cfg.write_text("threads: 2\n")
    outside_cfg.write_text("threads: 1\n")
    log = root / "results/logs/invocations.jsonl"

    rec = record_invocation(log, root, ["snakemake", "--cores", "2"], [str(inside_cfg), str(outside_cfg)])

    want = {"config/cpu.yaml": file_sha256(inside_cfg), str(outside_cfg): file_sha256(outside_cfg)}
    assert rec["configfiles"] == want
    assert json.loads(log.read_text().splitlines()[-1]) == rec  # the line the run's provenance is built from


def _repo(root):
    """A git repository with the code paths a code hash is taken over, committed."""
    import subprocess

    from leap.workflow.provenance import CODE_PATHS

    for p in CODE_PATHS:
        f = root / p
        if p == "Snakefile":
            f.write_text("rule all:\n    input: []\n")
        else:
            f.mkdir(parents=True)
            (f / "x.py").write_text("A = 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(root), "commit", "-qm", "code"], check=True)
    return git


def test_make_cpu_refuses_results_made_by_other_code_naming_both_hashes(tmp_path, capsys):
    import subprocess

    from leap.workflow.provenance import git_state, main, stale_results

    root = tmp_path / "repo"
    root.mkdir()
    git = _repo(root)
    results = root / "results/cpu"
    assert stale_results(results, root) is None  # nothing made yet: nothing stale
    (results / "tables").mkdir(parents=True)
    (results / "tables/table1.csv").write_text("a,b\n1,2\n")
    assert "no record of the code" in stale_results(results, root)
    record_invocation(results / "logs/invocations.jsonl", root, ["snakemake"], [])
    old = git_state(root)["code_hash"]
    assert stale_results(results, root) is None and main(["current", str(results), "--root", str(root)]) == 0

    (root / "leap/x.py").write_text("A = 2\n")  # the code changes ...
    assert "uncommitted code changes" in stale_results(results, root)
    subprocess.run([*git, "-C", str(root), "commit", "-qam", "change"], check=True)  # ... and is committed
    new = git_state(root)["code_hash"]
    assert main(["current", str(results), "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and old[:12] in err and new[:12] in err and old != new
    assert "rm -r" in err and "ALLOW_STALE=1" in err  # how to rerun, and the override


def test_make_cpu_checks_its_results_are_current_before_running_anything():
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(["make", "-n", "cpu"], cwd=repo, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    check = next(i for i, line in enumerate(lines) if "leap.workflow.provenance current results/cpu" in line)
    first_run = next(i for i, line in enumerate(lines) if "snakemake" in line)
    assert check < first_run and 'test -n ""' in lines[check]  # ALLOW_STALE unset: the check runs
