"""The ``leap`` command line: ``diagnose``, ``bench``, ``encode``,
``convert``, ``calibrate``, ``amortize`` (and ``python -m leap``).

Every sub-command prints a readable table, or JSON with ``--json``. The exit rule is the
model's own (``leap_exit.json`` in an exit-enabled folder, else :class:`ExitConfig`'s
defaults, ``l_min`` from the depth); ``--strategy/--theta/--patience/--min-layer``
override single fields. Bad input (a missing model or file, a threshold out of range)
prints one line naming the problem and exits with code 2, without a traceback. Messages
go through :mod:`logging` (``--verbose`` shows them).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from leap import __version__
from leap.cli import deploy_cmds, inspect_cmds
from leap.cli.common import overrides
from leap.core.exit_config import ExitConfig
from leap.errors import LeapError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leap", description="Early-exit embeddings (LEAP, ACL 2026): diagnose, benchmark, encode, convert."
    )
    parser.add_argument("--version", action="version", version=f"leap {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show log messages")
    sub = parser.add_subparsers(dest="command", required=True)
    inspect_cmds.add_parsers(sub)
    deploy_cmds.add_parsers(sub)
    return parser


def reference(width: int = 100) -> str:
    """Markdown of ``leap --help`` and every sub-command's ``--help``, as the parser prints them
    (the documentation's command-line page)."""
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)  # argparse wraps to the terminal's width
    try:
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = ["```text", parser.format_help().rstrip(), "```"]
        for name, command in sub.choices.items():
            parts += ["", f"## leap {name}", "", "```text", command.format_help().rstrip(), "```"]
        return "\n".join(parts) + "\n"
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        # check the exit rule before any file is read or model loaded
        if hasattr(args, "strategy"):
            ExitConfig(**overrides(args))
        return int(args.func(args) or 0)
    except LeapError as err:
        print(f"leap {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
