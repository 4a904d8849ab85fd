"""The package's shape: no import circle anywhere in `leap/`, the public names importable."""

from __future__ import annotations

from pathlib import Path

from leap.dependencies import import_cycles, import_graph

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_circle_in_the_package():
    graph = import_graph(ROOT)
    assert {"leap.exit_model", "leap.onnx_runtime", "leap.onnx_export", "leap.encoder"} <= set(graph)
    assert "leap.onnx_runtime" in graph["leap.exit_model"]  # the engine is reached one way only
    assert "leap.exit_model" not in graph["leap.onnx_runtime"]
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
