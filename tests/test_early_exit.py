"""The early-exit encoder: exactness against sentence-transformers and against a plain
per-sample Algorithm 1 loop, batch invariance, PABEE, BEIR / MTEB use, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leap.early_exit import EarlyExitEncoder, ExitConfig, simulate_exit
from leap.errors import LeapError
from leap.pooling import mean_pool


def reference_layers(path: str, sentence: str) -> torch.Tensor:
    """[L, d] pooled vectors of one sentence run alone through the model's own forward
    (transformers' output_hidden_states), independent of the encoder's layer loop."""
    from leap.early_exit import _load_sentence_transformer, _unwrap

    model, tok, max_len = _unwrap(_load_sentence_transformer(path, "cpu"), path)
    feats = tok([sentence], truncation=True, max_length=max_len, return_tensors="pt")
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


def gap_threshold(encoder: EarlyExitEncoder, sentences: list[str], l_min: int, k: int = 1) -> float:
    """A theta that splits the samples at the first checked layer (about half exit
    there, the rest later), placed in the widest gap of the middle half of the values so
    that float noise cannot flip a decision."""
    lv = encoder.layer_embeddings(sentences)
    first = max(l_min, k + 1)
    vals = np.sort(F.cosine_similarity(lv[first - 1], lv[first - 1 - k], dim=-1).numpy())
    n = len(vals)
    i = max(range(max(1, n // 4), max(2, 3 * n // 4 + 1)), key=lambda j: vals[j] - vals[j - 1])
    return float((vals[i] + vals[i - 1]) / 2)


# --------------------------------------------------------------------------- exactness


def test_none_equals_sentence_transformers_minilm(minilm_path, sentences):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(minilm_path, device="cpu").encode(sentences, normalize_embeddings=True)
    enc = EarlyExitEncoder.from_pretrained(minilm_path, exit=ExitConfig(strategy="none"), device="cpu")
    out, layers = enc.encode(sentences, return_exit_layers=True)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-5
    assert (layers == 6).all()


@pytest.mark.parametrize("arch", ["bert", "mpnet", "distilbert"])
def test_none_equals_sentence_transformers_tiny(tiny_models, arch, sentences):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(tiny_models[arch], device="cpu").encode(sentences, normalize_embeddings=True)
    enc = EarlyExitEncoder.from_pretrained(tiny_models[arch], exit=ExitConfig(strategy="none"), device="cpu")
    assert np.abs(enc.encode(sentences, batch_size=5) - ref).max() < 1e-5


def test_forced_exit_is_layer_m_minilm(minilm_path, sentences):
    """theta = -1 always passes the check, so every sample exits at l_min = m (m >= 2: Eq. 6
    needs l > k = 1) with exactly layer m's normalised pooled output."""
    enc = EarlyExitEncoder.from_pretrained(minilm_path, device="cpu", exit=ExitConfig(strategy="none"))
    ref = [reference_layers(minilm_path, s) for s in sentences]
    for m in range(2, enc.num_layers + 1):
        out, layers = enc.encode(sentences, return_exit_layers=True, exit=ExitConfig(theta=-1.0, min_layer=m))
        assert (layers == m).all()
        want = torch.stack([F.normalize(r[m - 1], dim=0) for r in ref]).numpy()
        assert np.abs(out - want).max() < 1e-5


@pytest.mark.parametrize("arch", ["bert", "mpnet", "distilbert"])
def test_forced_exit_is_layer_m_tiny(tiny_models, arch, sentences):
    enc = EarlyExitEncoder.from_pretrained(tiny_models[arch], device="cpu", exit=ExitConfig(strategy="none"))
    full = enc.layer_embeddings(sentences)
    for m in range(2, enc.num_layers + 1):
        out, layers = enc.encode(sentences, return_exit_layers=True, exit=ExitConfig(theta=-1.0, min_layer=m))
        assert (layers == m).all()
        assert np.abs(out - F.normalize(full[m - 1], dim=-1).numpy()).max() < 1e-5


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
@pytest.mark.parametrize("k", [1, 2])
def test_fast_path_equals_plain_algorithm1(tiny_models, arch, k, sentences):
    path = tiny_models[arch]
    enc = EarlyExitEncoder.from_pretrained(path, device="cpu", exit=ExitConfig(strategy="none"))
    theta = gap_threshold(enc, sentences, l_min=3, k=k)
    cfg = ExitConfig(theta=theta, patience=k, min_layer=3)
    out, layers = enc.encode(sentences, batch_size=8, return_exit_layers=True, exit=cfg)
    for i, s in enumerate(sentences):
        l_ref, e_ref = algorithm1(reference_layers(path, s), theta, k, 3)
        assert layers[i] == l_ref, (i, s)
        assert np.abs(out[i] - e_ref.numpy()).max() < 1e-5
    # and the vectorised reference used by the evaluation agrees
    sim_e, sim_l = simulate_exit(enc.layer_embeddings(sentences), cfg)
    assert (sim_l == layers).all() and np.abs(sim_e - out).max() < 1e-5
    assert len(set(layers.tolist())) > 1, "threshold should give a mix of exit layers"


@pytest.mark.parametrize("arch", ["bert", "mpnet", "distilbert"])
def test_batch_invariance(tiny_models, arch, sentences):
    """Same exit layer and embedding at batch 1, 7 and 32, compact on and off, whatever
    the padding of the batch."""
    sents = varied_sentences(sentences)
    enc = EarlyExitEncoder.from_pretrained(tiny_models[arch], device="cpu", exit=ExitConfig(strategy="none"))
    cfg = ExitConfig(theta=gap_threshold(enc, sents, l_min=2), min_layer=2)
    enc.exit = cfg
    alone = [enc.encode([s], return_exit_layers=True) for s in sents]
    ref_e = np.concatenate([a[0] for a in alone])
    ref_l = np.concatenate([a[1] for a in alone])
    assert len(set(ref_l.tolist())) >= 2  # a mix of early and later exits
    for compact in (True, False):
        enc.compact = compact
        for bs in (1, 7, 32):
            e, l = enc.encode(sents, batch_size=bs, return_exit_layers=True)
            assert (l == ref_l).all(), (compact, bs)
            assert np.abs(e - ref_e).max() < 1e-5, (compact, bs)


def test_compact_shrinks_batch(tiny_models, sentences):
    """compact=True really drops rows: the last layer sees only the rows still running."""
    enc = EarlyExitEncoder.from_pretrained(tiny_models["bert"], device="cpu", exit=ExitConfig(theta=-1.0, min_layer=2))
    seen: list[int] = []
    layer = enc.adapter.layers(enc.model)[-1]
    handle = layer.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    try:
        enc.encode(sentences, batch_size=32)
        assert seen == []  # everyone exited at layer 2; later layers never ran
        enc.exit = ExitConfig(strategy="none")
        enc.encode(sentences, batch_size=32)
        assert seen == [len(sentences)]
    finally:
        handle.remove()


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
    # agreement of layer l with l-1, for l = 2..8
    a = _chain([True, True, False, True, True, True, True])  # counter: 1 2 0 1 2 3 4
    b = _chain([True] * 7)  # counter: 1 2 3 4 5 6 7
    c = _chain([True, False] * 3 + [True])  # never 3 in a row
    v = torch.stack([a, b, c], dim=1)  # [L=8, N=3, d]
    cfg = ExitConfig(strategy="pabee", pabee_theta=0.99, pabee_patience=3, min_layer=2)
    _, layers = simulate_exit(v, cfg)
    assert layers.tolist() == [7, 4, 8]
    _, layers = simulate_exit(v, ExitConfig(strategy="pabee", pabee_patience=3, min_layer=6))
    assert layers.tolist() == [7, 6, 8]
    _, layers = simulate_exit(v, ExitConfig(strategy="pabee", pabee_patience=1, min_layer=2))
    assert layers.tolist() == [2, 2, 2]


def test_pabee_encoder_agrees_with_reference(tiny_models, sentences):
    enc = EarlyExitEncoder.from_pretrained(tiny_models["bert"], device="cpu", exit=ExitConfig(strategy="none"))
    theta = gap_threshold(enc, sentences, l_min=2)
    cfg = ExitConfig(strategy="pabee", pabee_theta=theta, pabee_patience=2, min_layer=2)
    out, layers = enc.encode(sentences, batch_size=5, return_exit_layers=True, exit=cfg)
    sim_e, sim_l = simulate_exit(enc.layer_embeddings(sentences), cfg)
    assert (layers == sim_l).all() and np.abs(out - sim_e).max() < 1e-5


def test_monitor_only_never_exits(tiny_models, sentences):
    enc = EarlyExitEncoder.from_pretrained(tiny_models["bert"], device="cpu", exit=ExitConfig(strategy="none"))
    full = enc.encode(sentences)
    out, layers = enc.encode(sentences, return_exit_layers=True, exit=ExitConfig(theta=-1, min_layer=1, monitor_only=True))
    assert (layers == enc.num_layers).all() and np.abs(out - full).max() < 1e-6


# --------------------------------------------------------------------------- BEIR and MTEB


def test_works_in_beir_exact_search(tiny_models):
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    corpus = {
        "d1": {"title": "guitar", "text": "a man is playing a guitar on a small stage"},
        "d2": {"title": "", "text": "heavy rain caused flooding in several neighbourhoods"},
        "d3": {"title": "bank", "text": "the bank raised interest rates"},
    }
    queries = {"q1": "a man is playing a guitar on a small stage", "q2": "the bank raised interest rates"}
    qrels = {"q1": {"d1": 1}, "q2": {"d3": 1}}
    enc = EarlyExitEncoder.from_pretrained(tiny_models["bert"], device="cpu", exit=ExitConfig(theta=0.9, min_layer=3))
    retriever = EvaluateRetrieval(DenseRetrievalExactSearch(enc, batch_size=2), score_function="cos_sim", k_values=[1, 3])
    results = retriever.retrieve(corpus, queries)
    assert set(results) == {"q1", "q2"} and all(len(r) == 3 for r in results.values())
    ndcg, *_ = retriever.evaluate(qrels, results, [1, 3])
    assert 0.0 <= ndcg["NDCG@3"] <= 1.0
    assert enc.last_query_exit_layers.shape == (2,) and enc.last_corpus_exit_layers.shape == (3,)


def test_mteb_style_encode(tiny_models, sentences):
    enc = EarlyExitEncoder.from_pretrained(tiny_models["mpnet"], device="cpu", exit=ExitConfig(theta=0.9, min_layer=3))
    out = enc.encode(sentences, task_name="STSBenchmark", prompt_type=None, batch_size=4, convert_to_tensor=False)
    assert isinstance(out, np.ndarray) and out.shape == (len(sentences), enc.embedding_dim)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- bad input


def test_empty_input(tiny_models):
    enc = EarlyExitEncoder.from_pretrained(tiny_models["bert"], device="cpu", exit=ExitConfig(min_layer=3))
    assert enc.encode([]).shape == (0, enc.embedding_dim)
    e, l = enc.encode([], return_exit_layers=True)
    assert e.shape == (0, enc.embedding_dim) and l.shape == (0,)


def test_non_str_item_names_index(tiny_models):
    enc = EarlyExitEncoder.from_pretrained(tiny_models["bert"], device="cpu", exit=ExitConfig(min_layer=3))
    with pytest.raises(TypeError, match=r"sentences\[2\] is int"):
        enc.encode(["a", "b", 3])
    with pytest.raises(TypeError, match="single str"):
        enc.encode("just one string")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"theta": 1.5}, r"theta must lie in \[-1, 1\]"),
        ({"theta": -1.01}, r"theta must lie in \[-1, 1\]"),
        ({"patience": 0}, "patience .* >= 1"),
        ({"min_layer": 0}, "min_layer must be >= 1"),
        ({"strategy": "fastest"}, "unknown exit strategy"),
    ],
)
def test_bad_exit_config(kwargs, match):
    with pytest.raises(LeapError, match=match):
        ExitConfig(**kwargs)


def test_min_layer_beyond_depth(tiny_models):
    with pytest.raises(LeapError, match=r"min_layer must lie in 1..6"):
        EarlyExitEncoder.from_pretrained(tiny_models["bert"], device="cpu", exit=ExitConfig(min_layer=7))


def test_missing_model_path(tmp_path):
    with pytest.raises(LeapError, match="does not exist"):
        EarlyExitEncoder.from_pretrained(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LeapError, match="not a model folder"):
        EarlyExitEncoder.from_pretrained(str(tmp_path / "empty"))


def test_hub_id_offline_gives_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LeapError, match="could not load model 'sentence-transformers/no-such-model-xyz'"):
        EarlyExitEncoder.from_pretrained("sentence-transformers/no-such-model-xyz", device="cpu")


def test_refuses_non_mean_pooling(tmp_path, tiny_models):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    st = SentenceTransformer(tiny_models["bert"], device="cpu")
    cls_model = SentenceTransformer(modules=[st[0], Pooling(st[0].get_embedding_dimension(), pooling_mode="cls")], device="cpu")
    cls_model.save(str(tmp_path / "cls"))
    with pytest.raises(LeapError, match="pooling mode 'cls' is not supported"):
        EarlyExitEncoder.from_pretrained(str(tmp_path / "cls"), device="cpu")


def test_plain_transformers_folder(tmp_path, tiny_models, sentences):
    """A plain transformers folder (no modules.json) gets mean pooling."""
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(tiny_models["bert"]).save_pretrained(tmp_path / "plain")
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(tmp_path / "plain")
    a = EarlyExitEncoder.from_pretrained(str(tmp_path / "plain"), device="cpu", exit=ExitConfig(strategy="none"))
    b = EarlyExitEncoder.from_pretrained(tiny_models["bert"], device="cpu", exit=ExitConfig(strategy="none"))
    assert np.abs(a.encode(sentences) - b.encode(sentences)).max() < 1e-5
