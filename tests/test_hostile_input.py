"""Bad and hostile input: every case gets a correct embedding (finite, unit length, the same
alone as in a batch, equal to full depth where nothing exits) or one clear error; never a
crash, a hang or silent garbage."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from leap.core.exit_config import ExitConfig
from leap.errors import LeapError
from leap.serving.model import load_exit_model

CASES = {
    "empty": "",
    "whitespace": " \t\n  ",
    "long_100k": "word " * 20_000,
    "control_chars": "a\x00b\x07c\x1b[31m red \x7f text \u200b\u202e reversed",
    "mixed_scripts": "Ελληνικά русский 中文 العربية हिन्दी emoji 🙂🚀 and English",
    "repeated_token": " ".join(["the"] * 600),
    "punctuation_only": "!!!???...,,,;;;",
    "converges_early": "the the the the the the the the the the",
    "normal": "A man is playing a guitar on a small stage.",
}


@pytest.fixture(scope="module")
def model(minilm_path):
    return load_exit_model(minilm_path, exit=ExitConfig(theta=0.9, min_layer=3), device="cpu")


@pytest.mark.parametrize("case", list(CASES))
def test_every_input_gets_a_finite_unit_embedding_alone_and_in_a_batch(model, case):
    text = CASES[case]
    alone, layer = model.encode_with_exit_layers([text])
    batch, layers = model.encode_with_exit_layers([CASES["normal"], text, CASES["long_100k"]], batch_size=3)
    assert np.isfinite(alone).all() and np.linalg.norm(alone[0]) == pytest.approx(1.0, abs=1e-5)
    assert layer[0] == layers[1] and np.abs(alone[0] - batch[1]).max() < 1e-5
    plain = model.encode([text], exit=ExitConfig(strategy="none"))
    if layer[0] == model.num_layers:  # nothing exited: exactly the full-depth embedding
        assert np.abs(plain[0] - alone[0]).max() < 1e-5


def test_a_100k_character_text_is_truncated_not_hung(model):
    import time

    t0 = time.perf_counter()
    emb = model.encode(["x " * 50_000])
    assert emb.shape == (1, 384) and time.perf_counter() - t0 < 30


def test_non_text_inputs_get_one_clear_error(model):
    with pytest.raises(LeapError, match=r"sentences\[1\] is NoneType"):
        model.encode_with_exit_layers(["ok", None])
    with pytest.raises(LeapError, match=r"sentences\[0\] is bytes"):
        model.encode_with_exit_layers([b"raw bytes"])


def test_invalid_utf8_file_is_one_line_error_in_the_cli(tmp_path, minilm_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n\xff\xfe broken \xc3\x28 bytes\n")
    proc = subprocess.run(
        [sys.executable, "-m", "leap", "encode", minilm_path, "--input", str(bad), "--output", str(tmp_path / "e.npy")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "is not UTF-8 text" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "e.npy").exists()


def test_empty_lines_and_strange_lines_in_a_file_encode(tmp_path, minilm_path):
    from leap.cli import main

    f = tmp_path / "odd.txt"
    f.write_text("\n".join(CASES.values()).replace("\n\n", "\n") + "\n", encoding="utf-8")
    assert main(["encode", minilm_path, "--input", str(f), "--output", str(tmp_path / "e.npy")]) == 0
    emb = np.load(tmp_path / "e.npy")
    assert np.isfinite(emb).all()
