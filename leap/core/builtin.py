"""Data shipped with the package: a built-in list of English sentences written for this project."""

from __future__ import annotations

from importlib import resources


def builtin_sentences() -> list[str]:
    """The built-in list of a few hundred English sentences written for this project
    (``leap diagnose`` / ``leap bench`` without ``--sentences``, tiny test vocabularies)."""
    text = resources.files("leap").joinpath("resources/sentences.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]
