"""Early exit as a sentence-transformers model: exactness against sentence-transformers and
against a plain per-sample Algorithm 1 loop, batch invariance, PABEE, truncation, per-layer
maps, saving and loading, thread safety, BEIR and bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leap.core.early_exit import adapter_for, simulate_exit
from leap.core.exit_config import ExitConfig
from leap.core.layer_maps import LayerMaps, fit_layer_maps
from leap.core.pooling import mean_pool
from leap.errors import LeapError
from leap.serving.model import ExitSentenceTransformer, load_exit_model
from leap.workflow.retrieval_model import ExitRetrievalModel


def load(path: str, **exit) -> ExitSentenceTransformer:
    return load_exit_model(path, exit=ExitConfig(**(exit or {"strategy": "none"})), device="cpu")


def reference_layers(path: str, sentence: str) -> torch.Tensor:
    """[L, d] pooled vectors of one sentence run alone through transformers' own forward
    (output_hidden_states), independent of the exit loop."""
    from transformers import AutoModel, AutoTokenizer

    model, tok = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    feats = tok([sentence], truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        out = model(**feats, output_hidden_states=True)
    return torch.stack([mean_pool(h, feats["attention_mask"])[0] for h in out.hidden_states[1:]])


def algorithm1(pooled: torch.Tensor, theta: float, k: int, l_min: int) -> tuple[int, torch.Tensor]:
    """Paper Algorithm 1 for one sample, written as plainly as the pseudocode."""
    n_layers = pooled.shape[0]
    for l in range(1, n_layers + 1):
        p_l = pooled[l - 1]
        if l >= l_min and l > k and F.cosine_similarity(p_l, pooled[l - k - 1], dim=0) >= theta:
            return l, p_l / p_l.norm()
    return n_layers, pooled[-1] / pooled[-1].norm()


def varied_sentences(base: list[str]) -> list[str]:
    extra = [s + " " + t for s, t in zip(base, reversed(base))]
    return base + extra + [w for s in base for w in s.split()[:1]]


def gap_threshold(model: ExitSentenceTransformer, sentences: list[str], l_min: int, k: int = 1) -> float:
    """A theta that splits the samples at the first checked layer (about half exit there,
    the rest later), in the widest gap of the middle half of the values, so that float noise
    cannot flip a decision."""
    lv = model.layer_embeddings(sentences)
    first = max(l_min, k + 1)
    vals = np.sort(F.cosine_similarity(lv[first - 1], lv[first - 1 - k], dim=-1).numpy())
    n = len(vals)
    i = max(range(max(1, n // 4), max(2, 3 * n // 4 + 1)), key=lambda j: vals[j] - vals[j - 1])
    return float((vals[i] + vals[i - 1]) / 2)


# --------------------------------------------------------------------------- exactness


def test_strategy_none_equals_sentence_transformers_minilm(minilm_path, sentences):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(minilm_path, device="cpu").encode(sentences)
    model = load(minilm_path)
    assert np.abs(model.encode(sentences) - ref).max() <= 1e-5
    _, layers = model.encode_with_exit_layers(sentences)
    assert (layers == 6).all()


@pytest.mark.parametrize("arch", ["bert", "mpnet", "distilbert"])
def test_strategy_none_equals_sentence_transformers_tiny(tiny_models, arch, sentences):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(tiny_models[arch], device="cpu").encode(sentences)
    assert np.abs(load(tiny_models[arch]).encode(sentences, batch_size=5) - ref).max() <= 1e-5


def test_forced_exit_is_layer_m_minilm(minilm_path, sentences):
    """theta = -1 always passes the check, so every sample exits at l_min = m (m >= 2: Eq. 6
    needs l > k = 1) with exactly layer m's normalised pooled output."""
    model = load(minilm_path)
    ref = [reference_layers(minilm_path, s) for s in sentences]
    for m in range(2, model.num_layers + 1):
        out, layers = model.encode_with_exit_layers(sentences, exit=ExitConfig(theta=-1.0, min_layer=m))
        assert (layers == m).all()
        want = torch.stack([F.normalize(r[m - 1], dim=0) for r in ref]).numpy()
        assert np.abs(out - want).max() < 1e-5


@pytest.mark.parametrize("arch", ["bert", "mpnet", "distilbert"])
def test_truncate_strategy_is_layer_m_for_every_sample(tiny_models, arch, sentences):
    model = load(tiny_models[arch])
    full = model.layer_embeddings(sentences)
    for m in range(1, model.num_layers):
        out, layers = model.encode_with_exit_layers(sentences, exit=ExitConfig(strategy="truncate", min_layer=m))
        assert (layers == m).all()
        assert np.abs(out - F.normalize(full[m - 1], dim=-1).numpy()).max() < 1e-5


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
@pytest.mark.parametrize("k", [1, 2])
def test_fast_path_equals_plain_algorithm1(tiny_models, arch, k, sentences):
    path = tiny_models[arch]
    model = load(path)
    theta = gap_threshold(model, sentences, l_min=3, k=k)
    cfg = ExitConfig(theta=theta, patience=k, min_layer=3)
    out, layers = model.encode_with_exit_layers(sentences, batch_size=8, exit=cfg)
    for i, s in enumerate(sentences):
        l_ref, e_ref = algorithm1(reference_layers(path, s), theta, k, 3)
        assert layers[i] == l_ref, (i, s)
        assert np.abs(out[i] - e_ref.numpy()).max() < 1e-5
    # the vectorised reference used by the evaluation agrees
    sim_e, sim_l = simulate_exit(model.layer_embeddings(sentences), cfg)
    assert (sim_l == layers).all() and np.abs(sim_e - out).max() < 1e-5
    assert len(set(layers.tolist())) > 1, "threshold should give a mix of exit layers"


@pytest.mark.parametrize("arch", ["bert", "mpnet", "distilbert"])
def test_every_sample_gets_its_alone_result_at_any_batch_size(tiny_models, arch, sentences):
    """Same exit layer and embedding at batch 1, 7 and 32, compact on and off, whatever the
    padding of the batch."""
    from leap.core.early_exit import exit_forward

    sents = varied_sentences(sentences)
    model = load(tiny_models[arch])
    cfg = ExitConfig(theta=gap_threshold(model, sents, l_min=2), min_layer=2)
    ref_e, ref_l = zip(*(model.encode_with_exit_layers([s], exit=cfg) for s in sents))
    ref_e, ref_l = np.concatenate(ref_e), np.concatenate(ref_l)
    assert len(set(ref_l.tolist())) >= 2  # a mix of early and later exits
    for bs in (1, 7, 32):
        e, l = model.encode_with_exit_layers(sents, batch_size=bs, exit=cfg)
        assert (l == ref_l).all(), bs
        assert np.abs(e - ref_e).max() < 1e-5, bs
    feats = model.features(sents)
    hf = model.exit_module.model
    a = exit_forward(hf, feats["input_ids"], feats["attention_mask"], cfg, compact=True)
    b = exit_forward(hf, feats["input_ids"], feats["attention_mask"], cfg, compact=False)
    assert torch.equal(a.exit_layers, b.exit_layers)
    assert (a.embeddings - b.embeddings).abs().max() < 1e-5


def test_compact_batches_drop_exited_rows(tiny_models, sentences):
    """compact=True really drops rows: the last layer sees only the rows still running."""
    model = load(tiny_models["bert"])
    hf = model.exit_module.model
    seen: list[int] = []
    handle = adapter_for(hf).layers(hf)[-1].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    try:
        model.encode_with_exit_layers(sentences, batch_size=32, exit=ExitConfig(theta=-1.0, min_layer=2))
        assert seen == []  # everyone exited at layer 2; later layers never ran
        model.encode_with_exit_layers(
            sentences, batch_size=32, exit=ExitConfig(strategy="convergence", theta=1.0, min_layer=2)
        )
        assert seen == [len(sentences)]
    finally:
        handle.remove()


# --------------------------------------------------------------------------- per-layer maps


def test_exit_embedding_is_the_mapped_exit_layer(tiny_models, sentences):
    """With maps, the fast path returns normalise(M_l(p_l)) at each row's exit layer: the same
    as the reference from one full pass, and the final layer is never mapped."""
    model = load(tiny_models["bert"])
    lv = model.layer_embeddings(varied_sentences(sentences))
    maps = fit_layer_maps(lv, ridge=0.1)
    model.exit_module.layer_maps = maps
    cfg = ExitConfig(theta=gap_threshold(model, sentences, l_min=2), min_layer=2)
    out, layers = model.encode_with_exit_layers(sentences, batch_size=5, exit=cfg)
    v = model.layer_embeddings(sentences)
    ref_e, ref_l = simulate_exit(v, cfg, embed_vectors=maps.apply_all(v))
    assert (ref_l == layers).all() and np.abs(ref_e - out).max() < 1e-5
    assert len(set(layers.tolist())) > 1
    full = model.encode(sentences, exit=ExitConfig(strategy="none"))
    assert np.abs(full - F.normalize(v[-1], dim=-1).numpy()).max() < 1e-5


def test_least_squares_maps_recover_a_known_affine_map():
    g = torch.Generator().manual_seed(0)
    final = torch.randn(400, 8, generator=g)
    a = torch.randn(8, 8, generator=g)
    layer1 = (F.normalize(final, dim=-1) - 0.3) @ torch.linalg.inv(a).T  # so that a x + 0.3 = unit(final)
    maps = fit_layer_maps(torch.stack([layer1, final]), ridge=1e-8)
    assert torch.allclose(maps.apply(1, layer1), F.normalize(final, dim=-1), atol=1e-3)
    assert not bool(maps.fitted[1]) and torch.equal(maps.apply(2, final), final)


def test_maps_round_trip_through_safetensors(tmp_path):
    maps = fit_layer_maps(torch.randn(3, 50, 4))
    maps.save(tmp_path)
    back = LayerMaps.load(tmp_path)
    assert torch.equal(back.weight, maps.weight) and torch.equal(back.fitted, maps.fitted)
    assert LayerMaps.load(tmp_path / "none") is None


# --------------------------------------------------------------------------- PABEE


def _chain(agree: list[bool], d: int = 3) -> torch.Tensor:
    """[L, d] unit vectors; step l -> l+1 has cosine 0.999 where agree[l] else 0.5."""
    vecs = [torch.tensor([1.0, 0.0, 0.0])]
    angle = 0.0
    for a in agree:
        angle += float(np.arccos(0.999 if a else 0.5))
        vecs.append(torch.tensor([np.cos(angle), np.sin(angle), 0.0], dtype=torch.float32))
    return torch.stack(vecs)


def test_pabee_counts_consecutive_agreeing_layers():
    a = _chain([True, True, False, True, True, True, True])  # counter: 1 2 0 1 2 3 4
    b = _chain([True] * 7)  # counter: 1 2 3 4 5 6 7
    c = _chain([True, False] * 3 + [True])  # never 3 in a row
    v = torch.stack([a, b, c], dim=1)  # [L=8, N=3, d]
    cfg = ExitConfig(strategy="pabee", pabee_theta=0.99, pabee_patience=3, min_layer=2)
    assert simulate_exit(v, cfg)[1].tolist() == [7, 4, 8]
    assert simulate_exit(v, ExitConfig(strategy="pabee", pabee_patience=3, min_layer=6))[1].tolist() == [7, 6, 8]
    assert simulate_exit(v, ExitConfig(strategy="pabee", pabee_patience=1, min_layer=2))[1].tolist() == [2, 2, 2]


def test_pabee_fast_path_agrees_with_reference(tiny_models, sentences):
    model = load(tiny_models["bert"])
    cfg = ExitConfig(
        strategy="pabee", pabee_theta=gap_threshold(model, sentences, l_min=2), pabee_patience=2, min_layer=2
    )
    out, layers = model.encode_with_exit_layers(sentences, batch_size=5, exit=cfg)
    sim_e, sim_l = simulate_exit(model.layer_embeddings(sentences), cfg)
    assert (layers == sim_l).all() and np.abs(out - sim_e).max() < 1e-5


def test_monitor_only_never_exits(tiny_models, sentences):
    model = load(tiny_models["bert"])
    full = model.encode(sentences)
    out, layers = model.encode_with_exit_layers(sentences, exit=ExitConfig(theta=-1, min_layer=1, monitor_only=True))
    assert (layers == model.num_layers).all() and np.abs(out - full).max() < 1e-6


# --------------------------------------------------------------------------- sentence-transformers


def test_exit_layer_is_an_output_feature_with_no_extra_argument(tiny_models):
    model = load(tiny_models["bert"], theta=-1.0, min_layer=3)
    row = model.encode(["a b c"], output_value=None)[0]
    assert int(row["exit_layer"]) == 3 and row["sentence_embedding"].shape == (32,)


def test_encode_keeps_every_sentence_transformers_option(tiny_models, sentences):
    model = load(tiny_models["bert"], theta=-1.0, min_layer=3)
    ref = model.encode(sentences)
    assert model.encode(sentences[0]).shape == (32,)  # a single string
    t = model.encode(sentences, convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.as_tensor(ref), atol=1e-6)
    assert model.encode(sentences, truncate_dim=8).shape == (len(sentences), 8)
    assert model.encode(sentences, precision="int8").dtype == np.int8
    q, d = model.encode_query(sentences[:2]), model.encode_document(sentences[:3])
    assert model.similarity(q, d).shape == (2, 3)
    # a prompt reaches the tokenizer on the exit path too
    assert np.abs(model.encode(sentences[:2], prompt="query: ") - ref[:2]).max() > 1e-4
    with pytest.raises(ValueError, match="additional keyword arguments"):
        model.encode(sentences, exti=ExitConfig())  # a misspelt keyword is refused


def test_per_call_exit_does_not_change_the_model(tiny_models, sentences):
    model = load(tiny_models["bert"], theta=-1.0, min_layer=2)
    _, layers = model.encode_with_exit_layers(sentences, exit=ExitConfig(strategy="none"))
    assert (layers == 6).all()
    assert model.exit_config.min_layer == 2 and model.exit_config.theta == -1.0
    _, layers = model.encode_with_exit_layers(sentences)
    assert (layers == 2).all()


def test_two_threads_get_the_results_they_get_alone(tiny_models, sentences):
    model = load(tiny_models["bert"])
    a_cfg, b_cfg = ExitConfig(theta=-1.0, min_layer=2), ExitConfig(strategy="none")
    sa, sb = sentences[:6] * 5, sentences[6:] * 5
    alone_a, alone_b = model.encode_with_exit_layers(sa, exit=a_cfg), model.encode_with_exit_layers(sb, exit=b_cfg)
    got: dict[str, tuple] = {}

    def run(name: str, sents: list[str], cfg: ExitConfig) -> None:
        for _ in range(5):
            got[name] = model.encode_with_exit_layers(sents, batch_size=3, exit=cfg)

    threads = [threading.Thread(target=run, args=("a", sa, a_cfg)), threading.Thread(target=run, args=("b", sb, b_cfg))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, alone in (("a", alone_a), ("b", alone_b)):
        assert (got[name][1] == alone[1]).all() and np.abs(got[name][0] - alone[0]).max() < 1e-6


def test_saved_model_loads_at_full_depth_in_plain_sentence_transformers(tiny_models, tmp_path, sentences):
    import json

    from sentence_transformers import SentenceTransformer

    model = load(tiny_models["bert"], theta=0.9, min_layer=3)
    model.save(str(tmp_path / "m"))
    assert json.loads((tmp_path / "m" / "modules.json").read_text())[0]["type"].endswith(".Transformer")
    plain = SentenceTransformer(str(tmp_path / "m"), device="cpu")  # no trust_remote_code
    assert type(plain[0]).__name__ == "Transformer"
    ref = SentenceTransformer(tiny_models["bert"], device="cpu").encode(sentences)
    assert np.abs(plain.encode(sentences) - ref).max() < 1e-5
    back = ExitSentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert back.exit_config == ExitConfig(theta=0.9, min_layer=3)


def test_default_min_layer_comes_from_the_depth(tiny_models):
    assert load(tiny_models["bert"], theta=0.95).exit_config.min_layer == 3  # half of 6 layers
    assert ExitConfig().resolve(12).min_layer == 6 and ExitConfig().resolve(24).min_layer == 6


def test_trust_remote_code_is_refused(tiny_models):
    with pytest.raises(LeapError, match="trust_remote_code is not supported"):
        ExitSentenceTransformer(tiny_models["bert"], trust_remote_code=True)


# --------------------------------------------------------------------------- BEIR


def test_beir_exact_search_accumulates_exit_layers_across_corpus_chunks(tiny_models):
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    corpus = {f"d{i}": {"title": "t", "text": f"document number {i} about the bank and a guitar"} for i in range(7)}
    queries = {"q1": "a man is playing a guitar", "q2": "the bank raised interest rates"}
    qrels = {"q1": {"d1": 1}, "q2": {"d3": 1}}
    model = load(tiny_models["bert"], theta=0.9, min_layer=3)
    adapter = ExitRetrievalModel(model)
    search = DenseRetrievalExactSearch(adapter, batch_size=2, corpus_chunk_size=3)  # 3 chunks
    retriever = EvaluateRetrieval(search, score_function="cos_sim", k_values=[1, 3])
    results = retriever.retrieve(corpus, queries)
    assert set(results) == {"q1", "q2"}
    ndcg, *_ = retriever.evaluate(qrels, results, [1, 3])
    assert 0.0 <= ndcg["NDCG@3"] <= 1.0
    assert len(adapter.corpus_exit_layers) == 3 and adapter.exit_layers("corpus").shape == (7,)
    assert adapter.exit_layers("query").shape == (2,)


# --------------------------------------------------------------------------- bad input


def test_empty_input_gives_empty_arrays(tiny_models):
    model = load(tiny_models["bert"], min_layer=3)
    e, l = model.encode_with_exit_layers([])
    assert e.shape == (0, 32) and l.shape == (0,)


def test_non_str_item_is_named_by_index(tiny_models):
    model = load(tiny_models["bert"], min_layer=3)
    with pytest.raises(LeapError, match=r"sentences\[2\] is int"):
        model.encode_with_exit_layers(["a", "b", 3])
    with pytest.raises(LeapError, match="single str"):
        model.encode_with_exit_layers("just one string")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"theta": 1.5}, r"theta must lie in \[-1, 1\]"),
        ({"theta": -1.01}, r"theta must lie in \[-1, 1\]"),
        ({"patience": 0}, "patience .* >= 1"),
        ({"min_layer": 0}, "min_layer must be >= 1"),
        ({"strategy": "fastest"}, "unknown exit strategy"),
    ],
    ids=["theta_above_1", "theta_below_minus_1", "patience_0", "min_layer_0", "unknown_strategy"],
)
def test_bad_exit_config_is_refused_with_the_fix(kwargs, match):
    with pytest.raises(LeapError, match=match):
        ExitConfig(**kwargs)


def test_min_layer_beyond_depth_is_refused(tiny_models):
    with pytest.raises(LeapError, match=r"min_layer must lie in 1..6"):
        load(tiny_models["bert"], min_layer=7)


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(LeapError, match="does not exist"):
        load_exit_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LeapError, match="not a model folder"):
        load_exit_model(str(tmp_path / "empty"))


def test_hub_id_offline_gives_one_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LeapError, match="could not load model 'sentence-transformers/no-such-model-xyz'"):
        load_exit_model("sentence-transformers/no-such-model-xyz", device="cpu")


def test_non_mean_pooling_is_refused(tmp_path, tiny_models):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    st = SentenceTransformer(tiny_models["bert"], device="cpu")
    cls_model = SentenceTransformer(
        modules=[st[0], Pooling(st[0].get_embedding_dimension(), pooling_mode="cls")], device="cpu"
    )
    cls_model.save(str(tmp_path / "cls"))
    with pytest.raises(LeapError, match="pooling mode 'cls' is not supported"):
        load_exit_model(str(tmp_path / "cls"), device="cpu")


def test_plain_transformers_folder_gets_mean_pooling(tmp_path, tiny_models, sentences):
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(tiny_models["bert"]).save_pretrained(tmp_path / "plain")
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(tmp_path / "plain")
    a = load(str(tmp_path / "plain"))
    b = load(tiny_models["bert"])
    assert np.abs(a.encode(sentences, normalize_embeddings=True) - b.encode(sentences)).max() < 1e-5
