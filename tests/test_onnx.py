"""Early exit on ONNX Runtime: the exported depth segments give every sentence the exit layer
of the torch path and an embedding within 1e-4 (fp32), for BERT, MPNet and DistilBERT;
int8 runs and reports its shift; a stale or incompatible export is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e .[onnx]")

from leap.core.builtin import builtin_sentences  # noqa: E402
from leap.core.exit_config import ExitConfig  # noqa: E402
from leap.deploy.convert import convert
from leap.errors import LeapError  # noqa: E402
from leap.serving.model import (
    ExitSentenceTransformer,  # noqa: E402
    load_exit_model,  # noqa: E402
)
from leap.serving.onnx_export import export_onnx


def split_theta(model, sentences, layer):
    """A theta in the widest gap of the adjacent cosines at ``layer``: a mix of exits, no ties."""
    v = model.layer_embeddings(sentences)
    vals = np.sort(F.cosine_similarity(v[layer - 1], v[layer - 2], dim=-1).numpy())
    n = len(vals)
    i = max(range(n // 4, 3 * n // 4), key=lambda j: vals[j] - vals[j - 1])
    return float((vals[i] + vals[i - 1]) / 2)


@pytest.mark.parametrize("arch", ["bert", "mpnet", "distilbert"])
def test_onnx_segments_equal_the_torch_path(tmp_path, tiny_models, arch):
    sents = builtin_sentences()[:60]
    torch_model = load_exit_model(tiny_models[arch], exit=ExitConfig(strategy="none"), device="cpu")
    rule = ExitConfig(theta=split_theta(torch_model, sents, 3), min_layer=3)
    folder = convert(tiny_models[arch], tmp_path / "m", exit=rule, fit_maps_on=sents)
    manifest = export_onnx(folder, int8=True)
    assert manifest["first_segment_end"] == 2 and len(manifest["segments"]) == 1 + 1 + 4  # full, 1..2, 3, 4, 5, 6
    served = load_exit_model(str(folder), device="cpu")
    want_e, want_l = served.encode_with_exit_layers(sents, batch_size=7)
    ort = ExitSentenceTransformer(folder, backend="onnx", threads=1)
    got_e, got_l = ort.encode_with_exit_layers(sents, batch_size=7)
    assert len(set(want_l.tolist())) > 1 and (got_l == want_l).all()
    assert np.abs(got_e - want_e).max() < 1e-4
    full_t = served.encode(sents, exit=ExitConfig(strategy="none"))
    assert np.abs(ort.encode(sents, exit=ExitConfig(strategy="none")) - full_t).max() < 1e-4
    q8 = ExitSentenceTransformer(folder, backend="onnx-int8", threads=1)
    e8, l8 = q8.encode_with_exit_layers(sents)
    assert np.isfinite(e8).all() and ((l8 >= 3) & (l8 <= 6)).all()


def test_stale_or_incompatible_exports_are_refused(tmp_path, tiny_models):
    folder = convert(tiny_models["bert"], tmp_path / "m", exit=ExitConfig(min_layer=4))
    export_onnx(folder)
    with pytest.raises(LeapError, match="first segment ends at layer 3"):
        ExitSentenceTransformer(folder, backend="onnx", exit=ExitConfig(min_layer=2))
    with pytest.raises(LeapError, match="no int8 export"):
        ExitSentenceTransformer(folder, backend="onnx-int8")
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes() + b"\0")
    with pytest.raises(LeapError, match="other weights"):
        ExitSentenceTransformer(folder, backend="onnx")


def test_truncation_graph_serves_the_truncate_rule_like_torch(tmp_path, tiny_models):
    sents = builtin_sentences()[:20]
    folder = convert(tiny_models["bert"], tmp_path / "m", exit=ExitConfig(min_layer=4), fit_maps_on=sents)
    manifest = export_onnx(folder, truncations=[2])
    assert manifest["truncations"] == {"2": "truncated_02.onnx"}
    cut = ExitConfig(strategy="truncate", min_layer=2)  # before the first segment's end: the single graph serves it
    want_e, want_l = load_exit_model(str(folder), device="cpu").encode_with_exit_layers(sents, exit=cut)
    got_e, got_l = ExitSentenceTransformer(folder, backend="onnx", threads=1).encode_with_exit_layers(sents, exit=cut)
    assert (got_l == 2).all() and (want_l == 2).all()
    assert np.abs(got_e - want_e).max() < 1e-4
    with pytest.raises(LeapError, match="outside 1..6"):
        export_onnx(folder, truncations=[7])


def test_cli_exports_and_encodes_on_onnx_runtime(tmp_path, tiny_models, capsys):
    from leap.cli import main

    sents = builtin_sentences()[:12]
    folder = convert(tiny_models["distilbert"], tmp_path / "m", exit=ExitConfig(theta=0.5, min_layer=3))
    (tmp_path / "in.txt").write_text("\n".join(sents) + "\n", encoding="utf-8")
    assert main(["export", str(folder), "--truncations", "3"]) == 0
    assert (folder / "onnx" / "truncated_03.onnx").exists() and not (folder / "onnx.tmp").exists()
    said = capsys.readouterr().out  # one line, saying whether fused copies were written
    fused = list((folder / "onnx").glob("*.fused.onnx"))
    assert said.count("\n") == 1 and ("with fused copies" in said if fused else "does not fuse" in said)
    out, lay = tmp_path / "e.npy", tmp_path / "l.npy"
    assert (
        main(
            [
                "encode",
                str(folder),
                "--input",
                str(tmp_path / "in.txt"),
                "--output",
                str(out),
                "--exit-layers",
                str(lay),
                "--backend",
                "onnx",
                "--json",
            ]
        )
        == 0
    )
    want_e, want_l = load_exit_model(str(folder), device="cpu").encode_with_exit_layers(sents)
    assert (np.load(lay) == want_l).all() and np.abs(np.load(out) - want_e).max() < 1e-4


def test_the_onnx_backend_is_an_explicit_choice_and_a_bad_one_is_refused(tmp_path, tiny_models):
    sents = builtin_sentences()[:10]
    folder = convert(tiny_models["mpnet"], tmp_path / "m", exit=ExitConfig(theta=0.5, min_layer=3))
    export_onnx(folder)
    served = load_exit_model(str(folder), backend="onnx")
    assert isinstance(served, ExitSentenceTransformer) and served.backend == "onnx"
    want = load_exit_model(str(folder), device="cpu").encode(sents)
    assert np.abs(served.encode(sents) - want).max() < 1e-4
    with pytest.raises(LeapError, match="backend must be"):
        load_exit_model(str(folder), backend="tensorrt")


def test_onnx_layer_stack_equals_the_torch_path(tmp_path, tiny_models):
    sents = builtin_sentences()[:40]
    torch_model = load_exit_model(tiny_models["bert"], exit=ExitConfig(strategy="none"), device="cpu")
    rule = ExitConfig(theta=split_theta(torch_model, sents, 3), min_layer=3)
    folder = convert(tiny_models["bert"], tmp_path / "m", exit=rule, fit_maps_on=sents)
    export_onnx(folder)
    want_s, want_l = load_exit_model(str(folder), device="cpu").encode_with_layer_stack(sents, batch_size=8)
    got_s, got_l = ExitSentenceTransformer(folder, backend="onnx", threads=1).encode_with_layer_stack(
        sents, batch_size=8
    )
    assert (got_l == want_l).all() and len(set(want_l.tolist())) > 1
    assert np.abs(got_s - want_s).max() < 1e-4


def test_the_onnx_backend_keeps_the_sentence_transformer_api(tmp_path, tiny_models):
    """`ExitSentenceTransformer(folder, backend="onnx")` stays a SentenceTransformer whose first
    module runs ONNX Runtime: `encode` with the torch model's arguments, `encode_query`,
    `similarity`, the embedding dimension, `save` and a monitor all work as on torch."""
    import torch
    from sentence_transformers import SentenceTransformer

    from leap.deploy.monitor import attach_monitor

    sents = builtin_sentences()[:10]
    folder = convert(tiny_models["bert"], tmp_path / "m", exit=ExitConfig(theta=0.5, min_layer=3))
    export_onnx(folder, int8=True)
    ort = ExitSentenceTransformer(str(folder), backend="onnx")
    q8 = ExitSentenceTransformer(str(folder), backend="onnx-int8")
    torch_model = ExitSentenceTransformer(str(folder))
    for model in (ort, q8, torch_model):
        assert isinstance(model, SentenceTransformer) and isinstance(model, ExitSentenceTransformer)
        assert model.get_embedding_dimension() == 32 and model.device.type == "cpu"
    assert "ONNX Runtime fp32" in repr(ort) and "ONNX Runtime int8" in repr(q8) and "torch" in repr(torch_model)
    for kwargs in (
        {},
        {"convert_to_tensor": True},
        {"normalize_embeddings": True, "truncate_dim": 16},
        {"precision": "int8"},
        {"exit": {"strategy": "none"}},
        {"prompt": "query: "},
    ):
        want, got = torch_model.encode(sents, **kwargs), ort.encode(sents, **kwargs)
        assert type(got) is type(want) and got.shape == want.shape, kwargs
        if kwargs.get("precision") != "int8":  # int8 bins are calibrated per call; float rows agree
            assert np.abs(np.asarray(got, dtype=np.float32) - np.asarray(want, dtype=np.float32)).max() < 1e-4
    rows_t, rows_o = torch_model.encode(sents, output_value=None), ort.encode(sents, output_value=None)
    assert [int(r["exit_layer"]) for r in rows_o] == [int(r["exit_layer"]) for r in rows_t]
    assert ort.encode(sents[0]).shape == torch_model.encode(sents[0]).shape == (32,)
    assert np.abs(ort.encode_query(sents[:3]) - torch_model.encode_query(sents[:3])).max() < 1e-4
    assert torch.allclose(ort.similarity(ort.encode(sents[:2]), ort.encode(sents[:2])).diagonal(), torch.ones(2))
    monitor = attach_monitor(ort)
    ort.encode(sents)
    assert monitor.stats()["rows"] == len(sents)
    ort.save(str(tmp_path / "copy"))
    copy = ExitSentenceTransformer(str(tmp_path / "copy"), backend="onnx")
    assert np.abs(copy.encode(sents) - ort.encode(sents)).max() < 1e-6
    with pytest.raises(LeapError, match="token embeddings"):
        ort.encode(sents, output_value="token_embeddings")
    with pytest.raises(LeapError, match="runs on the CPU"):
        ExitSentenceTransformer(str(folder), backend="onnx", device="cuda")


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_fused_graphs_equal_torch_where_the_optimizer_fuses_every_layer(tmp_path, tiny_models, arch):
    sents = builtin_sentences()[:40]
    torch_model = load_exit_model(tiny_models[arch], exit=ExitConfig(strategy="none"), device="cpu")
    rule = ExitConfig(theta=split_theta(torch_model, sents, 3), min_layer=3)
    folder = convert(tiny_models[arch], tmp_path / "m", exit=rule)
    manifest = export_onnx(folder, int8=True, truncations=[2])
    if arch == "mpnet":  # relative position bias: ONNX Runtime's optimizer cannot fuse it
        assert manifest["fused"] is None and not list((folder / "onnx").glob("*.fused*.onnx"))
        with pytest.raises(LeapError, match="no fused graphs"):
            ExitSentenceTransformer(folder, backend="onnx-fused")
        return
    assert manifest["fused"]["operators"]["full.onnx"]["Attention"] == 6
    want_e, want_l = load_exit_model(str(folder), device="cpu").encode_with_exit_layers(sents, batch_size=7)
    fused = ExitSentenceTransformer(folder, backend="onnx-fused", threads=1)
    got_e, got_l = fused.encode_with_exit_layers(sents, batch_size=7)
    assert len(set(want_l.tolist())) > 1 and (got_l == want_l).all()
    assert np.abs(got_e - want_e).max() < 1e-4
    for cut in (ExitConfig(strategy="none"), ExitConfig(strategy="truncate", min_layer=2)):
        assert np.abs(fused.encode(sents, exit=cut) - torch_model.encode(sents, exit=cut)).max() < 1e-4
    q8 = ExitSentenceTransformer(folder, backend="onnx-fused-int8", threads=1)
    full = ExitConfig(strategy="none")
    cos = (q8.encode(sents, exit=full) * torch_model.encode(sents, exit=full)).sum(-1)
    assert cos.min() > 0.9 and "ONNX Runtime fused int8" in q8.serving_path
