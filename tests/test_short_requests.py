"""A request is padded to its own longest text, never to a fixed length; one ``encode`` call
runs its texts in length-sorted batches; and the ONNX Runtime engine splits a batch further
into length-sorted runs, each trimmed to its own longest row."""

from __future__ import annotations

import random

import numpy as np
import pytest

from leap.core.exit_config import ExitConfig
from leap.deploy.convert import convert
from leap.serving.model import ExitSentenceTransformer


def texts_of_many_lengths(n: int = 24, seed: int = 0) -> list[str]:
    words = [
        "the",
        "a",
        "cat",
        "sat",
        "on",
        "mat",
        "while",
        "dogs",
        "ran",
        "far",
        "away",
        "from",
        "home",
        "every",
        "day",
    ]
    rng = random.Random(seed)
    out = [" ".join(rng.choice(words) for _ in range(1 + (7 * i) % 29)) for i in range(n)]
    rng.shuffle(out)
    return out


def test_torch_batches_are_padded_to_their_own_longest_text_in_length_order(tiny_models):
    model = ExitSentenceTransformer(tiny_models["bert"], device="cpu", exit=ExitConfig(strategy="none"))
    seen: list[tuple[list[int], int]] = []
    forward = model[0].forward

    def spy(features, *args, **kwargs):
        mask = features["attention_mask"]
        seen.append((mask.sum(1).tolist(), mask.shape[1]))
        return forward(features, *args, **kwargs)

    model[0].forward = spy
    texts = texts_of_many_lengths()
    model.encode(texts, batch_size=5)
    assert len(seen) == 5
    for lengths, width in seen:
        assert width == max(lengths)  # padded to the batch's own longest text
    widths = [w for _, w in seen]
    assert max(widths) < model.max_seq_length
    # sorted (by characters, as sentence-transformers does): less padding than in the order given
    tokens = [len(model.tokenizer(t)["input_ids"]) for t in texts]
    in_given_order = sum(len(tokens[i : i + 5]) * max(tokens[i : i + 5]) for i in range(0, len(tokens), 5))
    assert sum(len(lengths) * w for lengths, w in seen) < 0.8 * in_given_order


def test_onnx_runs_are_length_sorted_and_trimmed_to_their_own_longest_row(tmp_path, tiny_models):
    pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e .[onnx]")
    from leap.serving.onnx_export import export_onnx

    folder = convert(tiny_models["bert"], tmp_path / "m", exit=ExitConfig(min_layer=3))
    export_onnx(folder)
    model = ExitSentenceTransformer(folder, backend="onnx", threads=1)
    engine = model[0].engine
    engine.run_tokens = 64
    runs: list[tuple[list[int], int]] = []
    run = engine._run

    def spy(name, x, mask):
        if name == "full.onnx":
            runs.append((mask.sum(1).tolist(), mask.shape[1]))
        return run(name, x, mask)

    engine._run = spy
    texts = texts_of_many_lengths(32)
    full = ExitConfig(strategy="none")
    got = model.encode(texts, batch_size=32, exit=full)  # one request of 32: one batch, several runs
    assert len(runs) > 1
    for lengths, width in runs:
        assert width == max(lengths) and len(lengths) * width <= max(64, width)
    flat = [n for lengths, _ in runs for n in lengths]
    assert flat == sorted(flat) and len(flat) == 32
    one_by_one = np.stack([model.encode([t], exit=full)[0] for t in texts])
    assert np.abs(got - one_by_one).max() < 1e-5  # the runs change no vector


def test_length_runs_cover_every_row_once_within_the_token_budget():
    from leap.serving.onnx_runtime import length_runs

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, size=50)
    mask = (np.arange(40)[None, :] < lengths[:, None]).astype(np.int64)
    runs = length_runs(mask, 100)
    assert sorted(np.concatenate(runs).tolist()) == list(range(50))
    for rows in runs:
        assert len(rows) == 1 or len(rows) * lengths[rows].max() <= 100
    assert [lengths[r].max() for r in runs] == sorted(lengths[r].max() for r in runs)


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_the_onnx_module_tokenizes_through_the_rust_backend_exactly_as_the_tokenizer(tmp_path, tiny_models, arch):
    pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e .[onnx]")
    from leap.core.builtin import builtin_sentences
    from leap.serving.onnx_export import export_onnx

    folder = convert(tiny_models[arch], tmp_path / "m", exit=ExitConfig(strategy="none"))
    export_onnx(folder)
    module = ExitSentenceTransformer(folder, backend="onnx")[0]
    assert module.fast_tokenizer is not None
    texts = builtin_sentences()[:20] + ["", "  ", "word " * 2000, "émigré 東京 \u200b\x07 done"]
    for batch in (texts, texts[:1], texts[-3:]):
        for prompt in (None, "query: "):
            got = module.preprocess(batch, prompt=prompt)
            want = module.tokenizer(
                [prompt + t for t in batch] if prompt else batch, padding=True, truncation=True,
                max_length=module.max_seq_length, return_tensors="pt",
            )  # fmt: skip
            assert got["input_ids"].tolist() == want["input_ids"].tolist()
            assert got["attention_mask"].tolist() == want["attention_mask"].tolist()
    assert module.preprocess(["word " * 2000])["input_ids"].shape[1] == module.max_seq_length
