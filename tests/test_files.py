"""Atomic writes: a folder being replaced survives a crash at any point of the swap."""

from __future__ import annotations

import os

import pytest

from leap import files


def _folder(path, text):
    path.mkdir(parents=True)
    (path / "weights.txt").write_text(text)
    return path


def test_atomic_dir_replaces_a_folder_and_leaves_nothing_beside_it(tmp_path):
    target = _folder(tmp_path / "model", "old")
    with files.atomic_dir(target) as tmp:
        (tmp / "weights.txt").write_text("new")
        assert (target / "weights.txt").read_text() == "old"  # untouched until complete
    assert (target / "weights.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_error_keeps_the_old_folder_and_removes_the_partial_one(tmp_path):
    target = _folder(tmp_path / "model", "old")
    with pytest.raises(RuntimeError), files.atomic_dir(target) as tmp:
        (tmp / "weights.txt").write_text("half")
        raise RuntimeError("killed while writing")
    assert (target / "weights.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_replace_dir_crash_between_renames_keeps_the_old_folder(tmp_path, monkeypatch):
    """The old folder is renamed aside, never deleted, before the new one is in place."""
    target = _folder(tmp_path / "model", "old")
    new = _folder(tmp_path / "new", "new")
    real = os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("power cut")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", crash_on_second)
    with pytest.raises(OSError):
        files.replace_dir(new, target)
    kept = [p for p in tmp_path.rglob("weights.txt") if p.read_text() == "old"]
    assert len(kept) == 1, "the old folder's contents must survive the crash"
    assert (new / "weights.txt").read_text() == "new"


def test_replace_dir_into_a_new_place(tmp_path):
    new = _folder(tmp_path / "new", "new")
    files.replace_dir(new, tmp_path / "sub" / "model")
    assert (tmp_path / "sub" / "model" / "weights.txt").read_text() == "new"
    assert not new.exists()
