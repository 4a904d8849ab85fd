"""Which ``leap`` modules a workflow script uses (no torch here).

Snakemake reruns a rule when an input file changes; code in ``leap/`` reaches a rule only
as an input. Each rule lists, as its ``code`` input, exactly the package files its script
imports, directly or through other ``leap`` modules (function-level imports included), so
that editing a file reruns what depends on it and nothing else. Found by reading the
sources with :mod:`ast`, never by importing them.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = "leap"


def _imported_leap_modules(path: Path) -> frozenset[str]:
    """Dotted ``leap...`` module names that ``path`` imports anywhere in its body, but for
    ``if TYPE_CHECKING:`` blocks (each file parsed once per version: a workflow start asks
    for the same files for every rule)."""
    st = path.stat()
    return _imports_of(str(path), st.st_mtime_ns, st.st_size)


def _type_checking_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports Python never runs."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_run(tree: ast.AST):
    """``ast.walk`` without the bodies of ``if TYPE_CHECKING:`` blocks (their ``else`` kept)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if _type_checking_only(node):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


@cache
def _imports_of(path: str, mtime_ns: int, size: int) -> frozenset[str]:  # noqa: ARG001 - the cache key
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    out: set[str] = set()
    for node in _walk_run(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from leap import x` may be a module
    return frozenset(out)


@cache
def _module_file(root: Path, dotted: str) -> Path | None:
    parts = dotted.split(".")
    base = root.joinpath(*parts)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


@cache
def module_closure(root: str, script: str) -> tuple[str, ...]:
    """Sorted package files ``script`` depends on: what it imports from ``leap``, what those
    import, and so on, with every parent package's ``__init__.py`` (Python runs them).
    ``script`` may also be a dotted ``leap`` module name."""
    root_p = Path(root)
    first = _module_file(root_p, script) if not script.endswith(".py") else Path(script)
    if first is None:
        raise FileNotFoundError(f"no module {script} under {root}")
    todo = [first]
    seen: set[Path] = set()
    files: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for dotted in _imported_leap_modules(path):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):
                f = _module_file(root_p, ".".join(parts[:i]))
                if f is not None and f not in files:
                    files.add(f)
                    todo.append(f)
    return tuple(sorted(str(f) for f in files))


def code_inputs(root: str | Path, script: str | Path, *modules: str | None) -> list[str]:
    """The ``code`` input of a rule whose script is ``script`` (paths under ``root``), plus the
    files of dotted ``modules`` the script reaches only by name (a registered objective)."""
    root_s = str(Path(root).resolve())
    files = set(module_closure(root_s, str(Path(script).resolve())))
    for m in modules:
        if m:
            files |= set(module_closure(root_s, m))
            files.add(str(_module_file(Path(root_s), m)))
    return sorted(files)
