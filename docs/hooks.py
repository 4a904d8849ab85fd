"""MkDocs hooks: the pages' generated parts, made at build time from the code so they cannot drift.

A page line ``<!-- generate: cli -->`` becomes every ``leap`` sub-command's help (from the
argparse parser); ``<!-- generate: sizing CONFIG [--gpu NAME] -->`` becomes
``python -m leap.workflow.sizing CONFIG``'s table for that config. The committed run's figures
that pages show are added to the site from ``results/cpu/figures/``.
"""

from __future__ import annotations

import io
import re
import shlex
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- generate: (?P<what>\w+)(?P<args>[^>]*)-->$", re.M)


def _generate(what: str, args: list[str]) -> str:
    if what == "cli":
        from leap.cli import reference

        return reference()
    if what == "sizing":
        from leap.workflow.sizing import main

        out = io.StringIO()
        with redirect_stdout(out):
            rc = main([str(ROOT / args[0]), *args[1:]])
        if rc != 0:
            raise RuntimeError(f"sizing {args} failed")
        return out.getvalue()
    raise ValueError(f"unknown generated part {what!r}")


FIGURES = {"assets/fig3_frontier_sts_b.png": ROOT / "results/cpu/figures/fig3_frontier_sts_b.png"}
"""Files of the committed run that pages show, served from where they are (not copied into docs/)."""


def on_files(files, config):  # noqa: ANN001, ANN201 - MkDocs' hook signature
    from mkdocs.structure.files import File

    for uri, path in FIGURES.items():
        if path.exists():
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, **kwargs: object) -> str:
    return MARKER.sub(lambda m: _generate(m["what"], shlex.split(m["args"])), markdown)
