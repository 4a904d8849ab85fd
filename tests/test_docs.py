"""The README and the docs do what they say: every `snakemake` line resolves as written (dry
runs), every Python snippet runs (offline, on local stand-ins for the Hub models), the generated
parts equal their generators, and the front page fits on a screen."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.benchmark_scripts import load_benchmark
from tests.test_workflow import jobs, run

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path, lang: str) -> list[str]:
    """The page's fenced ``lang`` blocks (dedented: a block inside a list item is indented)."""
    import textwrap

    return [textwrap.dedent(b) for b in re.findall(rf"```{lang}\n(.*?)```", page.read_text(encoding="utf-8"), re.S)]


def snakemake_commands() -> list[str]:
    """The `snakemake ...` lines of every bash block (continuations joined, comments and a
    leading `make ... &&` dropped)."""
    out = []
    for page in PAGES:
        for block in blocks(page, "bash"):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip().split("&&")[-1].strip()
                if line.startswith("snakemake") and " ".join(line.split()) not in out:
                    out.append(" ".join(line.split()))
    return out


COMMANDS = snakemake_commands()


def test_the_front_page_fits_on_a_screen_and_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    first = blocks(ROOT / "README.md", "bash")[0].splitlines()
    assert first[0].startswith("make demo") and first[1].startswith("make test")
    for page in re.findall(r"\]\((docs/[\w-]+\.md)", text):
        assert (ROOT / page).exists(), page


def test_the_docs_have_the_commands_this_test_checks():
    assert "snakemake --cores all --sdm conda" in COMMANDS
    assert any("results/paper/abl_inter/seed0/eval/stsb.json" in c for c in COMMANDS)
    assert any("--workflow-profile profiles/slurm" in c for c in COMMANDS)
    assert len(COMMANDS) >= 8


@pytest.mark.workflow
@pytest.mark.parametrize("command", [c for c in COMMANDS if "--report" not in c])
def test_a_snakemake_line_of_the_docs_resolves_as_written(command, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    args = shlex.split(command)[1:]
    args = " ".join(args).replace("--sdm conda", "").split()  # no conda on the test machines
    args = [re.sub(r"^data_dir=.*", f"data_dir={data}", a) for a in args]
    args = [str(ROOT / a) if a.startswith(("config/", "profiles/")) else a for a in args]
    proc = run(["-n", *args], tmp_path)
    assert proc.returncode == 0, (command, proc.stderr[-2000:])
    counts = jobs(proc)
    out = proc.stdout + proc.stderr
    if "--configfile" not in command:  # the paper's configuration is the default
        assert "results/paper/" in out and "results/demo/" not in out
    if "abl_inter" in command:  # one ablation, one seed, forced: its training and its evaluation
        assert counts["train_student"] == 1 and counts["eval_stsb"] == 1 and "abl_inter" in out
    if "demo.yaml" in command:
        assert "results/demo/" in out
    if "cpu.yaml" in command:
        assert "results/cpu/" in out


def test_report_commands_name_an_existing_config():
    for c in [c for c in COMMANDS if "--report" in c]:
        for arg in shlex.split(c):
            if arg.startswith("config/"):
                assert (ROOT / arg).exists(), c


PYTHON_PAGES = [p for p in PAGES if blocks(p, "python")]


@pytest.fixture(scope="module")
def snippet_dir(tmp_path_factory, tiny_models, minilm_path) -> tuple[Path, dict[str, str]]:
    """A working folder as the pages assume one: `sentences.txt`, `pairs.tsv`, and
    `minilm-exit` (the getting-started page's `leap convert ... minilm-exit --theta 0.93`, of
    a tiny BERT so that the serving page's export and calibration take seconds); and the
    stand-ins for Hub models."""
    from leap.core.builtin import builtin_sentences
    from leap.core.exit_config import ExitConfig
    from leap.deploy.convert import convert

    work = tmp_path_factory.mktemp("snippets")
    sents = builtin_sentences()[:60]
    (work / "sentences.txt").write_text("\n".join(sents) + "\n")
    (work / "pairs.tsv").write_text("".join(f"{a}\t{b}\t{i % 5}\n" for i, (a, b) in enumerate(zip(sents, sents[1:]))))
    convert(tiny_models["bert"], work / "minilm-exit", exit=ExitConfig(theta=0.93))
    stand_ins = {
        "sentence-transformers/all-MiniLM-L6-v2": minilm_path,
        "sentence-transformers/all-mpnet-base-v2": tiny_models["mpnet"],
    }
    return work, stand_ins


@pytest.mark.slow
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: p.name)
def test_every_python_snippet_of_a_page_runs(page, snippet_dir, tmp_path):
    """The page's Python blocks, in order, in one fresh process, offline, in a copy of the
    working folder; Hub model ids are replaced by local stand-ins (the packaged
    all-MiniLM-L6-v2, a tiny MPNet), nothing else."""
    import shutil

    prepared, stand_ins = snippet_dir
    work = shutil.copytree(prepared, tmp_path / "work")
    code = "\n\n".join(blocks(page, "python"))
    for hub_id, local in stand_ins.items():
        code = code.replace(f'"{hub_id}"', repr(local))
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{page.name}:\n{proc.stderr[-3000:]}"


def test_the_results_page_is_its_generators_output_for_the_committed_run():
    """docs/results.md is `benchmarks/results_page.py results/cpu` as written, and the README's
    table is the page's headline: a rerun that changes a number changes both, or this fails."""
    results = ROOT / "results" / "cpu"
    if not (results / "tables" / "frontier_summary.csv").exists():
        pytest.skip("no committed results/cpu in this checkout")
    module = load_benchmark("results_page")
    assert (ROOT / "docs/results.md").read_text(encoding="utf-8") == module.page(Path("results/cpu"))
    assert module.headline_table(results) in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_command_line_page_is_the_parser_and_names_every_sub_command():
    from leap.cli import build_parser, reference

    text = reference()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert all(f"## leap {name}" in text and f"usage: leap {name}" in text for name in sub.choices)
    assert "<!-- generate: cli -->" in (ROOT / "docs/cli.md").read_text()


def test_the_citation_names_the_paper_and_this_version():
    import importlib.metadata

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["version"] == importlib.metadata.version("leap-exit")
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("LEAP: Layer-wise Exit-Aware Pretraining") and paper["year"] == 2026
    assert json.dumps(cff)  # plain data, no YAML-only types
