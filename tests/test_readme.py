"""Every `snakemake` command line of the README does what it says (dry runs, offline)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark
from tests.test_workflow import jobs, run

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The `snakemake ...` lines of the README's bash blocks (continuations joined, comments
    and a leading `make ... &&` dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            line = line.split("&&")[-1].strip()
            if line.startswith("snakemake"):
                out.append(" ".join(line.split()))
    return out


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_this_test_checks():
    assert "snakemake --cores all --use-conda" in COMMANDS
    assert any("results/paper/abl_inter/seed0/eval/stsb.json" in c for c in COMMANDS)
    assert len(COMMANDS) >= 6


@pytest.mark.workflow
@pytest.mark.parametrize("command", [c for c in COMMANDS if "--report" not in c])
def test_readme_snakemake_command_resolves_as_written(command, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    args = shlex.split(command)[1:]
    args = [a for a in args if a != "--use-conda"]  # no conda on the test machines
    args = [re.sub(r"^data_dir=.*", f"data_dir={data}", a) for a in args]
    args = [str(ROOT / a) if a.startswith("config/") else a for a in args]  # run in a scratch workdir
    proc = run(["-n", *args], tmp_path)
    assert proc.returncode == 0, (command, proc.stderr[-2000:])
    counts = jobs(proc)
    out = proc.stdout + proc.stderr
    if "--configfile" not in command:  # the paper's configuration is the default
        assert "results/paper/" in out and "results/demo/" not in out
    if "abl_inter" in command:  # one ablation, one seed, forced: its training and its evaluation
        assert counts["train_student"] == 1 and counts["eval_stsb"] == 1 and "abl_inter" in out
    elif "--configfile" not in command:
        assert counts["train_student"] == 18  # the whole paper DAG
    if "demo.yaml" in command:
        assert "results/demo/" in out
    if "cpu.yaml" in command:
        assert "results/cpu/" in out


def test_readme_report_commands_name_an_existing_config():
    for c in [c for c in COMMANDS if "--report" in c]:
        for arg in shlex.split(c):
            if arg.startswith("config/"):
                assert (ROOT / arg).exists(), c


def test_readme_results_tables_are_the_committed_run_as_printed():
    """The README's frontier and serving tables are `benchmarks/readme_results.py results/cpu`
    on the committed run: a rerun that changes a number changes the README, or this fails."""
    results = ROOT / "results" / "cpu"
    if not (results / "tables" / "frontier_summary.csv").exists():
        pytest.skip("no committed results/cpu in this checkout")
    module = load_benchmark("readme_results")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tables = module.readme_tables(results).split("\n\n")
    assert len(tables) == 3
    for table in tables:
        assert table in readme, table.splitlines()[0]


def test_readme_holds_the_committed_one_thread_serving_rows_of_the_students():
    """The README's one-thread rows of the CPU-scale students are
    `benchmarks/serving_paths_students.py`'s committed table, as written."""
    md = ROOT / "results" / "cpu" / "performance" / "serving_paths_students.md"
    if not md.exists():
        pytest.skip("no committed results/cpu in this checkout")
    table = "\n".join(line for line in md.read_text(encoding="utf-8").splitlines() if line.startswith("|"))
    assert table.count("\n") >= 5 and table in (ROOT / "README.md").read_text(encoding="utf-8")
