"""The package's shape: its public API, its architecture (import-linter contracts), and what serving imports."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_api_is_leap_all_each_name_defined_where_it_is_declared():
    import leap

    assert set(dir(leap)) >= set(leap.__all__) and set(leap.__all__) == {*leap._PUBLIC, "__version__"}
    for name in leap.__all__:
        if name == "__version__":
            continue
        obj = getattr(leap, name)
        assert obj.__module__ == leap._PUBLIC[name] and obj.__name__ == name, name
        assert obj.__module__.split(".")[1] in {"core", "serving", "deploy", "training", "errors"}, name
    with pytest.raises(AttributeError, match="no attribute 'Frontier'"):
        leap.Frontier  # noqa: B018 - the reproduction's names are not the library's


def test_no_library_package_reexports_a_name_so_each_has_one_import_path():
    """A library ``__init__.py`` (all but the top one's lazy table) imports a name only to use
    it, never to offer it again."""
    for init in sorted((ROOT / "leap").rglob("__init__.py")):
        rel = init.relative_to(ROOT).as_posix()
        if init.parent == ROOT / "leap" or rel.startswith("leap/workflow/"):
            continue
        tree = ast.parse(init.read_text(encoding="utf-8"))
        imported = {
            (a.asname or a.name).split(".")[0]
            for n in tree.body
            if isinstance(n, (ast.Import, ast.ImportFrom))
            for a in n.names
        }
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        used |= {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
        assert "__all__" not in used and imported - {"annotations"} <= used, f"{rel} re-exports {imported - used}"


def test_the_version_comes_from_the_package_metadata_alone():
    import importlib.metadata

    import leap

    assert leap.__version__ == importlib.metadata.version("leap-exit")
    literal = [p for p in (ROOT / "leap").rglob("*.py") if re.search(r"__version__\s*=\s*[\"']\d", p.read_text())]
    assert literal == []


def test_the_import_contracts_fail_on_a_library_import_of_the_reproduction(tmp_path):
    """The architecture is stated as import-linter contracts in pyproject.toml (`make test` runs
    `lint-imports` on the tree); a copy of the package where a library module imports the
    reproduction breaks them, naming the import."""
    shutil.copytree(ROOT / "leap", tmp_path / "leap", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    pooling = tmp_path / "leap/core/pooling.py"
    pooling.write_text(pooling.read_text() + "\nfrom leap.workflow import plan  # noqa\n")
    exe = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    broken = subprocess.run(
        [str(exe), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert broken.returncode == 1
    assert "The library never imports the reproduction (leap.workflow) BROKEN" in broken.stdout
    assert "leap.core.pooling -> leap.workflow.plan" in broken.stdout
    assert "lint-imports" in (ROOT / "Makefile").read_text().split("\nlint:")[1].split("\n\n")[0]


SERVE = """
import sys

def top() -> set:
    return {m.split(".")[0] for m in sys.modules} | {m for m in sys.modules if m.startswith("leap")}

from sentence_transformers import SentenceTransformer
SentenceTransformer(sys.argv[1]).encode(["a man plays a guitar", "the dog runs"])
print(" ".join(sorted(top())))
from leap import ExitSentenceTransformer
for backend in ("torch", "onnx"):
    ExitSentenceTransformer(sys.argv[1], backend=backend).encode(["a man plays a guitar", "the dog runs"])
    print(" ".join(sorted(top())))
"""
WORKFLOW_PACKAGES = {"snakemake", "beir", "seaborn", "matplotlib", "mteb", "jsonschema", "tabulate", "pandas"}


@pytest.mark.slow
def test_serving_a_model_imports_no_workflow_package(tmp_path, tiny_models):
    """In a fresh process, serving an exit-enabled folder with torch and with ONNX Runtime loads
    no module of the reproduction and no package beyond what plain sentence-transformers loads
    (plus onnxruntime for ONNX), so the base install serves."""
    pytest.importorskip("onnxruntime")
    from leap.deploy.convert import convert
    from leap.serving.onnx_export import export_onnx

    folder = convert(tiny_models["bert"], tmp_path / "m")
    export_onnx(folder)

    out = subprocess.run([sys.executable, "-c", SERVE, str(folder)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    plain, torch_served, onnx_served = (set(line.split()) for line in out.stdout.splitlines()[-3:])
    for served, extra in ((torch_served, set()), (onnx_served, {"onnxruntime", "onnx"})):
        assert not {m for m in served if m.startswith("leap.workflow")}
        assert not served & (WORKFLOW_PACKAGES - plain)
        assert {m for m in served if "." not in m} - plain - extra <= {"leap"}
    assert "onnxruntime" in onnx_served - torch_served  # the engine served, not torch again


def test_no_module_over_500_lines_and_no_function_over_80():
    import ast

    too_long = []
    for path in sorted((ROOT / "leap").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 500:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert too_long == []


def test_environment_yml_pins_the_versions_the_tests_run_with():
    """`--use-conda` builds environment.yml; the tests run in the venv that `make venv` built
    with the same pins as constraints. Every pin must be what is installed here."""
    import importlib.metadata as metadata
    import re

    import yaml

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", p).groups() for p in pip)
    assert {"torch", "transformers", "sentence-transformers"} <= set(pins)
    installed = {name: metadata.version(name).split("+")[0] for name in pins}
    assert installed == pins, "update environment.yml to the tested versions (or rebuild the venv: make venv)"


def test_make_test_starts_the_slow_modules_first_on_both_workers():
    """`make test` runs the modules with slow tests first (conftest's sort), one module per
    worker at a time. pytest-xdist >= 3.8 reorders modules by test count unless told not to,
    which sent the rehearsal (one slow fixture, six tests) last and left one worker idle for
    about 100 s."""
    from types import SimpleNamespace

    from .conftest import pytest_collection_modifyitems

    line = next(s for s in (ROOT / "Makefile").read_text().splitlines() if "-m pytest" in s)
    assert "--dist loadscope" in line and "--no-loadscope-reorder" in line

    def item(name: str, slow: bool) -> SimpleNamespace:
        return SimpleNamespace(name=name, get_closest_marker=lambda m, s=slow: object() if m == "slow" and s else None)

    items = [item("a", False), item("b", True), item("c", False), item("d", True)]
    pytest_collection_modifyitems(None, items)
    assert [i.name for i in items] == ["b", "d", "a", "c"]
