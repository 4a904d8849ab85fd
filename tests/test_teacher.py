"""Teacher cache: equals the model's own output, resumes identically, refuses mismatches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leap.errors import LeapError
from leap.training.teacher import TeacherCache, build_teacher_cache, required_layers

SENTS = [
    f"sentence {w} number {i} for the cache" for i, w in enumerate(["alpha", "beta", "gamma", "delta", "epsilon"] * 8)
]


def test_required_layers():
    assert required_layers([(6, None)], 12) == [2, 4, 6, 8, 10, 12]
    assert required_layers([(6, [1, 2, 3, 4, 5, 6]), (4, None)], 12) == [1, 2, 3, 4, 5, 6, 9, 12]
    with pytest.raises(LeapError, match="outside"):
        required_layers([(2, [1, 13])], 12)


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_final_layer_equals_model_output_alone(tmp_path, tiny_models, arch):
    from sentence_transformers import SentenceTransformer

    model = tiny_models[arch]
    build_teacher_cache(model, SENTS, tmp_path / "c", layers=[2, 6], batch_size=7, shard_size=16, progress=False)
    cache = TeacherCache.open(tmp_path / "c", sentences=SENTS, teacher=model)
    st = SentenceTransformer(model, device="cpu")
    st = SentenceTransformer(modules=[st[0], st[1]], device="cpu")  # without Normalize: pooled, not normalised
    for i in (0, 17, 39):
        alone = st.encode([SENTS[i]], convert_to_numpy=True)[0]
        got = cache.get([i])[6][0].numpy()
        np.testing.assert_allclose(got, alone, rtol=2e-3, atol=2e-3)


def test_resume_identical_and_corruption_detected(tmp_path, tiny_models):
    model = tiny_models["bert"]
    build_teacher_cache(model, SENTS, tmp_path / "full", layers=[3, 6], shard_size=8, progress=False)
    assert (
        build_teacher_cache(
            model, SENTS, tmp_path / "part", layers=[3, 6], shard_size=8, progress=False, stop_after_shards=2
        )
        == {}
    )
    assert not (tmp_path / "part" / "manifest.json").exists()
    with pytest.raises(LeapError, match="manifest.json missing"):
        TeacherCache.open(tmp_path / "part")
    build_teacher_cache(model, SENTS, tmp_path / "part", layers=[3, 6], shard_size=8, progress=False)
    for f in sorted((tmp_path / "full").glob("shard_*.npy")):
        assert f.read_bytes() == (tmp_path / "part" / f.name).read_bytes()
    a = json.loads((tmp_path / "full/manifest.json").read_text())
    b = json.loads((tmp_path / "part/manifest.json").read_text())
    assert a == b
    shard = tmp_path / "part" / "shard_00001.npy"
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(LeapError, match="shard_00001.npy is corrupted"):
        TeacherCache.open(tmp_path / "part")


def test_refuses_other_sentences_teacher_or_layers(tmp_path, tiny_models):
    model = tiny_models["bert"]
    build_teacher_cache(model, SENTS, tmp_path / "c", layers=[3, 6], shard_size=64, progress=False)
    with pytest.raises(LeapError, match="other sentences"):
        TeacherCache.open(tmp_path / "c", sentences=SENTS[:-1])
    with pytest.raises(LeapError, match="built with teacher"):
        TeacherCache.open(tmp_path / "c", teacher=tiny_models["mpnet"])
    with pytest.raises(LeapError, match=r"lacks teacher layers \[2\]"):
        TeacherCache.open(tmp_path / "c", layers=[2, 6])
    c = TeacherCache.open(tmp_path / "c")
    out = c.get([5, 0, 5])
    assert sorted(out) == [3, 6] and out[6].shape == (3, 32) and out[6].dtype.is_floating_point
    np.testing.assert_array_equal(out[6][0].numpy(), out[6][2].numpy())


@pytest.mark.slow
def test_fault_a_full_disk_stops_the_cache_in_one_line_and_it_resumes_from_its_last_shard(tmp_path, tiny_models):
    """Two shards written, then the kernel refuses the third (RLIMIT_FSIZE below a shard's
    size): one line naming the shard and its bytes, the two shards intact, nothing half
    written; with space back the cache resumes at the third shard and equals an uninterrupted one."""
    from tests.faults import ONE_LINE, record, run_limited

    model, args = tiny_models["bert"], {"layers": [3, 6], "shard_size": 8, "progress": False}
    build_teacher_cache(model, SENTS, tmp_path / "full", **args)
    build_teacher_cache(model, SENTS, tmp_path / "part", stop_after_shards=2, **args)
    before = {f.name: f.read_bytes() for f in (tmp_path / "part").glob("shard_*")}
    size = (tmp_path / "part" / "shard_00000.npy").stat().st_size
    code = ONE_LINE + (
        "import json\nfrom leap.training.teacher import build_teacher_cache\n"
        "one_line(lambda: build_teacher_cache(sys.argv[1], json.loads(sys.argv[2]), 'part', **json.loads(sys.argv[3])))"
    )
    proc = run_limited(code, size - 1, tmp_path, model, json.dumps(SENTS), json.dumps(args))
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "not enough space to write" in line and "shard_00002.npy" in line, proc.stderr
    assert {f.name: f.read_bytes() for f in (tmp_path / "part").glob("shard_*")} == before
    assert not [p for p in (tmp_path / "part").iterdir() if p.name.startswith(".")]  # no half-written temp file
    build_teacher_cache(model, SENTS, tmp_path / "part", **args)
    for f in sorted((tmp_path / "full").glob("shard_*")):
        assert f.read_bytes() == (tmp_path / "part" / f.name).read_bytes()
    record(
        "a full disk writing the teacher cache",
        "RLIMIT_FSIZE below a shard's size after two complete shards",
        line,
        "nothing: the complete shards are kept and the cache resumes at the next one",
    )
