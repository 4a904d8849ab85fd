"""What every ``leap`` sub-command shares: the exit-rule arguments, loading the model, reading
a sentence file, and printing tables."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from leap.core.exit_config import STRATEGIES, ExitConfig
from leap.errors import LeapError

EXIT_DEFAULTS = ExitConfig()


def exit_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("exit rule (paper Eq. 6; default: the model's saved rule)")
    g.add_argument(
        "--strategy", default=None, choices=list(STRATEGIES), help=f"exit strategy (default {EXIT_DEFAULTS.strategy})"
    )
    g.add_argument(
        "--theta", type=float, default=None, help=f"convergence threshold in [-1, 1] (default {EXIT_DEFAULTS.theta})"
    )
    g.add_argument(
        "--patience", type=int, default=None, help=f"k: compare layer l with l-k (default {EXIT_DEFAULTS.patience})"
    )
    g.add_argument(
        "--min-layer", type=int, default=None, help="l_min (default: 6, or half depth for models under 12 layers)"
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"], help="GPU only for 16-bit")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = {"strategy": "strategy", "theta": "theta", "patience": "patience", "min_layer": "min_layer"}
    return {k: getattr(args, a) for k, a in keys.items() if getattr(args, a, None) is not None}


def load_model(args: argparse.Namespace, backend: str = "torch"):
    """The model of ``args`` on ``backend`` with the exit-rule arguments applied to its rule."""
    from leap.serving.model import load_exit_model

    dtype = None if args.dtype in (None, "float32") else args.dtype
    model = load_exit_model(args.model, device=args.device, dtype=dtype, backend=backend)
    over = overrides(args)
    if over:
        model.with_exit(dataclasses.replace(model.exit_config, **over))
    return model


def read_lines(path: str | None) -> list[str]:
    from leap.core.builtin import builtin_sentences

    if path is None:
        return builtin_sentences()
    p = Path(path)
    if p.is_dir():
        raise LeapError(f"{path!r} is a folder; give a text file, one sentence per line")
    if not p.is_file():
        raise LeapError(f"sentence file {path!r} does not exist (expected a text file, one sentence per line)")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise LeapError(
            f"sentence file {path!r} is not UTF-8 text (byte {err.start}: {err.reason}); convert it to UTF-8"
        ) from None
    if lines and lines[-1] == "":
        lines = lines[:-1]
    return lines


def rule_text(e: dict) -> str:
    return f"rule: {e['strategy']}, theta {e['theta']}, k {e['patience']}, l_min {e['min_layer']}"
