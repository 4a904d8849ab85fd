"""Nothing of the user's is lost: `convert`, `export`, `calibrate`, `encode` and `bench` refuse
to replace what is not theirs and check every output path before any work; what the package
writes gets the user's umask; a bad exit rule or `leap_exit.json` is one clear error."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from leap.core.builtin import builtin_sentences
from leap.core.exit_config import ExitConfig
from leap.deploy.convert import convert
from leap.errors import LeapError
from leap.files import atomic_dir, check_output_folder, write_json
from leap.serving.model import ExitSentenceTransformer


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    from leap.cli import main

    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def exit_folder(tmp_path_factory, tiny_models) -> Path:
    return convert(tiny_models["bert"], tmp_path_factory.mktemp("conv") / "exit")


def test_convert_refuses_a_file_and_a_folder_of_other_files_unless_overwrite(tmp_path, tiny_models, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    rc, err = run_cli(["convert", tiny_models["bert"], str(notes)], capsys)
    assert rc == 2 and "is a file; refusing to replace it" in err and notes.read_text() == "my notes"
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("chapter 1")
    rc, err = run_cli(["convert", tiny_models["bert"], str(work)], capsys)
    assert rc == 2 and "folder of other files" in err and (work / "thesis.tex").read_text() == "chapter 1"
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    rc, _ = run_cli(["convert", tiny_models["bert"], str(work), "--overwrite"], capsys)
    assert rc == 0 and (work / "leap_exit.json").exists() and not (work / "thesis.tex").exists()
    rc, _ = run_cli(["convert", tiny_models["bert"], str(work)], capsys)  # an exit-enabled folder: ours
    assert rc == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing half-written


@pytest.mark.parametrize("where", [".", "~", "/", ".."])
def test_convert_never_writes_onto_the_current_folder_a_home_or_the_root(
    tmp_path, tiny_models, capsys, where, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "keep.txt").write_text("mine")
    rc, err = run_cli(["convert", tiny_models["bert"], where, "--overwrite"], capsys)
    assert rc == 2 and "refusing to write into" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "keep.txt").read_text() == "mine" and not list(tmp_path.glob(".*old*"))


def test_export_refuses_an_onnx_folder_it_did_not_write(tmp_path, tiny_models, capsys):
    pytest.importorskip("onnxruntime")
    folder = convert(tiny_models["bert"], tmp_path / "m")
    (folder / "onnx").mkdir()
    (folder / "onnx" / "mine.onnx").write_bytes(b"not leap's")
    rc, err = run_cli(["export", str(folder)], capsys)
    assert rc == 2 and "folder of other files" in err and (folder / "onnx" / "mine.onnx").exists()


def test_export_keeps_the_graphs_a_serving_record_needs(tmp_path, tiny_models):
    """A folder calibrated to serve int8 cut at layer 2 is exported again without --int8 or the
    cut: the int8 graphs and the cut stay, so the calibrated path still serves."""
    pytest.importorskip("onnxruntime")
    from leap.serving.onnx_export import export_onnx

    folder = convert(tiny_models["bert"], tmp_path / "m")
    cut = ExitConfig(strategy="truncate", min_layer=2)
    cut.save(folder, extra={"serving": {"backend": "onnx-int8", "precision": "int8", "threads": 1}})
    manifest = export_onnx(folder)
    assert manifest["int8"] and manifest["truncations"] == {"2": "truncated_02.onnx"}
    served = ExitSentenceTransformer(folder, backend="calibrated")
    assert served.backend == "onnx-int8" and served.encode(["a b c"]).shape == (1, 32)
    again = export_onnx(folder, truncations=[4])  # adds a cut, keeps the others
    assert set(again["truncations"]) == {"2", "4"} and again["int8"]


def test_every_output_path_is_checked_before_the_work(tmp_path, exit_folder, capsys):
    text = tmp_path / "in.txt"
    text.write_text("a sentence\nanother one\n")
    (tmp_path / "dir.npy").mkdir()
    argv = ["encode", str(exit_folder), "--input", str(text), "--output", str(tmp_path / "e.npy")]
    rc, err = run_cli([*argv, "--exit-layers", str(tmp_path / "dir.npy")], capsys)
    assert rc == 2 and "is a folder; a file is written there" in err and not (tmp_path / "e.npy").exists()
    rc, err = run_cli(["bench", str(exit_folder), "--iters", "1", "--output", str(tmp_path)], capsys)
    assert rc == 2 and "is a folder" in err and "Traceback" not in err
    (exit_folder / "serving_paths.txt").mkdir()
    try:
        rc, err = run_cli(["calibrate", str(exit_folder), "--data", str(text), "--paths", "auto"], capsys)
        assert rc == 2 and "serving_paths.txt is a folder" in err
    finally:
        (exit_folder / "serving_paths.txt").rmdir()
    assert check_output_folder(tmp_path / "new", "leap_exit.json") == (tmp_path / "new").resolve()


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_and_folders_follow_the_umask(tmp_path, tiny_models, mask):
    old = os.umask(mask)
    try:
        write_json(tmp_path / "r.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("x")
        model = convert(tiny_models["bert"], tmp_path / "m")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "r.json") == 0o666 & ~mask
    assert mode(tmp_path / "d") == mode(model) == 0o777 & ~mask
    assert mode(model / "leap_exit.json") == mode(model / "model.safetensors") == 0o666 & ~mask


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"theta": "0.9"}, "theta must be a number, got '0.9'"),
        ({"patience": 1.5}, "patience must be a whole number"),
        ({"min_layer": True}, "min_layer must be a whole number"),
        ({"monitor_only": "yes"}, "monitor_only must be true or false"),
        ({"theta": 1.5}, "theta must lie in [-1, 1]"),
    ],
)
def test_exit_config_checks_types_and_ranges(kwargs, needle):
    with pytest.raises(LeapError) as err:
        ExitConfig(**kwargs)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "content, needle",
    [
        ({"strategy": "convergence", "thetaa": 0.9}, "unknown key 'thetaa'; allowed keys: strategy, theta"),
        ({"theta": "0.9"}, "theta must be a number"),
        ([0.9], "must hold a JSON object"),
    ],
)
def test_a_bad_leap_exit_json_is_one_error_naming_the_file(tmp_path, tiny_models, content, needle, capsys):
    folder = convert(tiny_models["bert"], tmp_path / "m")
    (folder / "leap_exit.json").write_text(json.dumps(content))
    with pytest.raises(LeapError) as err:
        ExitSentenceTransformer(folder)
    assert needle in str(err.value) and "leap_exit.json" in str(err.value)
    text = tmp_path / "in.txt"
    text.write_text("a sentence\n")
    capsys.readouterr()
    rc, cli_err = run_cli(["encode", str(folder), "--input", str(text), "--output", str(tmp_path / "e.npy")], capsys)
    assert rc == 2 and needle in cli_err and len(cli_err.strip().splitlines()) == 1


def test_export_and_calibrate_print_no_third_party_warnings(tmp_path, tiny_models, capfd):
    pytest.importorskip("onnxruntime")
    from leap.cli import main

    folder = convert(tiny_models["bert"], tmp_path / "m")
    capfd.readouterr()
    assert main(["export", str(folder), "--int8"]) == 0
    data = tmp_path / "d.txt"
    data.write_text("\n".join(builtin_sentences()[:30]) + "\n")
    assert main(["calibrate", str(folder), "--data", str(data), "--thetas", "0.9"]) == 0
    err = capfd.readouterr().err
    assert "Warning" not in err and "WARNING" not in err and "Loading weights" not in err, err[-2000:]
