"""A trained student's model card (:mod:`leap.training.model_card`) with its STS-B frontier row."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from leap.training.model_card import write_model_card
from leap.workflow.records import PairEval


def frontier_lines(stsb: dict) -> list[str]:
    """The STS-B frontier row of a model card (Markdown lines) from its ``stsb.json`` record."""
    split = PairEval.from_dict(stsb).split("test")
    at = split.frontier.at_config
    return [
        "| STS-B (full depth) | STS-B (exited) | exit rate | E[l] | layer reduction | exit advantage |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {split.spearman_full:.3f} | {split.spearman_exit:.3f} | {100 * split.exit_rate:.1f}% | "
        f"{split.expected_exit_layer:.2f} | {split.layer_reduction:.2f}x | {at.exit_advantage:+.3f} |",
        "",
        "Exit advantage: exited Spearman minus the same model cut at a fixed layer with the same mean depth "
        "(linear between layers). Below zero, static truncation is the better deal.",
    ]


def write_card_with_frontier(
    folder: str | os.PathLike, info: dict[str, Any], stsb: dict, out: str | os.PathLike
) -> Path:
    """The card of the trained model in ``folder`` with the frontier row of ``stsb`` -> ``out``."""
    return write_model_card(folder, info, frontier_lines(stsb), out=out)
