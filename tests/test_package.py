"""The package's shape: no import circle anywhere in `leap/`, the public names importable."""

from __future__ import annotations

from pathlib import Path

from leap.workflow.dependencies import import_cycles, import_graph

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_circle_in_the_package():
    graph = import_graph(ROOT)
    assert {
        "leap.serving.model",
        "leap.serving.onnx_runtime",
        "leap.serving.onnx_export",
        "leap.serving.encoder",
    } <= set(graph)
    assert "leap.serving.onnx_runtime" in graph["leap.serving.model"]  # the engine is reached one way only
    assert "leap.serving.model" not in graph["leap.serving.onnx_runtime"]
    assert import_cycles(graph) == []


def test_import_cycles_finds_a_circle_through_function_level_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_public_names_import_from_the_top_level():
    import leap

    for name in ("ExitSentenceTransformer", "load_exit_model", "ExitConfig", "ExitEncoder", "LayerMaps"):
        assert getattr(leap, name) is not None


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
