"""Training: outputs, determinism, resume, NaN stop, variants, a new objective in one file,
bad configs, DDP (gloo)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from leap.errors import LeapError
from leap.training.losses.layerskip import LayerDropout
from leap.training.run import cpu_has_bf16, train
from leap.training.teacher import TeacherCache, build_teacher_cache
from leap.workflow.variants import VARIANTS, make_train_config

SENTS = [
    f"the {a} {b} is near the {c} today"
    for a in ("man", "dog", "cat", "child")
    for b in ("runs", "sleeps", "plays")
    for c in ("water", "house", "stage", "park")
]  # 48 sentences


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("train")
    teacher = tiny_models["mpnet"]
    build_teacher_cache(teacher, SENTS, root / "cache", layers=[1, 2, 3, 4, 5, 6], shard_size=20, progress=False)
    return {"root": root, "teacher": teacher, "student": tiny_models["bert"], "cache": root / "cache"}


def cfg(setup, variant="leap", seed=0, **over):
    base = {
        "student": setup["student"],
        "batch_size": 8,
        "epochs": 1,
        "max_seq_length": 16,
        "log_steps": 2,
        "lr": 1e-3,
        "loss": {"focus_layer": 3},
    }
    return make_train_config(base, variant, seed, variant_overrides=over)


class caplog_at:
    """Collect the messages of leap's loggers inside a ``with`` block."""

    def __init__(self, level: int) -> None:
        self.level, self.messages = level, []

    def __enter__(self) -> list[str]:
        outer = self

        class H(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                outer.messages.append(record.getMessage())

        self.handler, self.logger = H(level=self.level), logging.getLogger("leap")
        self.old = self.logger.level
        self.logger.setLevel(self.level)
        self.logger.addHandler(self.handler)
        return self.messages

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.old)


def weights(path: Path) -> dict[str, torch.Tensor]:
    files = list(Path(path).rglob("*.safetensors"))
    out = {}
    for f in files:
        out.update({f"{f.name}:{k}": v for k, v in load_file(str(f)).items()})
    return out


def run(setup, name, c, **kw):
    return train(c, SENTS, setup["cache"], setup["root"] / name, teacher=setup["teacher"], progress_bar=False, **kw)


def test_outputs_load_and_log(setup):
    from sentence_transformers import SentenceTransformer

    from leap.core.exit_config import ExitConfig
    from leap.serving.model import ExitSentenceTransformer

    model = run(setup, "out", cfg(setup), exit=ExitConfig(theta=0.9))
    out = model.parent
    served = SentenceTransformer(str(model), device="cpu")
    assert served.encode(["a test"]).shape == (1, 32)
    init_len = SentenceTransformer(str(setup["student"]), device="cpu").max_seq_length
    assert served.max_seq_length == max(init_len, 16)  # trained at 16 tokens, served at the init's length
    exiting = ExitSentenceTransformer(str(model), device="cpu")
    assert exiting.exit_config == ExitConfig(theta=0.9, min_layer=3)  # saved with the model, l_min from depth
    assert exiting.encode(["a test"]).shape == (1, 32)
    card = (model / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "theta 0.9" in card and "label" not in card
    assert load_file(str(out / "projection.safetensors"))["weight"].shape == (32, 32)
    conf = json.loads((out / "train_config.json").read_text())
    assert conf["loss"]["terms"] == list(VARIANTS["leap"]["loss"]["terms"]) and conf["steps"] == 6
    rows = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    for key in ("final", "inter", "exit_t", "exit_s", "contrast", "late", "redund", "total", "beta_s", "lr"):
        assert key in rows[-1]
    assert rows[0]["beta_s"] < rows[-1]["beta_s"]  # the progressive schedule moved


def test_same_seed_bitwise_identical_other_seed_differs(setup):
    a = weights(run(setup, "s0a", cfg(setup, seed=0)))
    b = weights(run(setup, "s0b", cfg(setup, seed=0)))
    c = weights(run(setup, "s1", cfg(setup, seed=1)))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
def test_bf16_trains_on_a_cpu_with_native_bfloat16_deterministically(setup):
    """bf16 mixed precision runs on a CPU with AVX512-BF16/AMX (the CPU reproduction's setting):
    the same seed gives the same weights, which differ from fp32's."""
    fp32 = weights(run(setup, "p32", cfg(setup)))
    a = weights(run(setup, "bf16a", cfg(setup, precision="bf16")))
    b = weights(run(setup, "bf16b", cfg(setup, precision="bf16")))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], fp32[k]) for k in a)
    assert all(v.dtype == fp32[k].dtype for k, v in a.items())  # saved in full precision


@pytest.mark.parametrize(
    "precision, native, message",
    [("fp16", True, "precision fp16 needs a GPU"), ("bf16", False, "bf16 on this CPU would be emulated")],
)
def test_mixed_precision_a_cpu_cannot_run_fast_is_refused_in_one_line(monkeypatch, precision, native, message):
    from leap.training import run as run_module

    monkeypatch.setattr(run_module, "cpu_has_bf16", lambda: native)
    with pytest.raises(LeapError, match=message) as err:
        run_module.check_precision(precision, cuda=False)
    assert "\n" not in str(err.value)
    run_module.check_precision(precision, cuda=True)  # a GPU runs either


@pytest.fixture(scope="module")
def uninterrupted(setup) -> dict[str, torch.Tensor]:
    """The weights of a two-epoch run with a checkpoint every 2 steps, never stopped: what a
    resumed run of the same config must end with (trained once for the tests that compare)."""
    return weights(run(setup, "uninterrupted", cfg(setup, checkpoint_steps=2, epochs=2)))


def test_resume_after_kill_matches_uninterrupted(setup, uninterrupted):
    c, full = cfg(setup, checkpoint_steps=2, epochs=2), uninterrupted
    run(setup, "killed", c, stop_after_steps=4)
    assert not (setup["root"] / "killed" / "model").exists()
    assert (setup["root"] / "killed" / "checkpoints" / "checkpoint-4").exists()
    assert json.loads((setup["root"] / "killed" / "checkpoints" / "checkpoint-4" / "leap_run.json").read_text())
    (setup["root"] / "killed" / "train_log.jsonl").unlink()  # Snakemake removes a failed job's outputs
    resumed = weights(run(setup, "killed", c))
    assert all(torch.allclose(full[k], resumed[k], atol=1e-6) for k in full)
    rows = [json.loads(l)["step"] for l in (setup["root"] / "killed" / "train_log.jsonl").read_text().splitlines()]
    full_rows = [
        json.loads(l)["step"] for l in (setup["root"] / "uninterrupted" / "train_log.jsonl").read_text().splitlines()
    ]
    assert rows == full_rows  # the log before the checkpoint came back from the checkpoint, no duplicates
    assert not (setup["root"] / "killed" / "checkpoints").exists()  # a completed run leaves no checkpoints


def test_checkpoints_of_another_config_are_discarded_not_resumed(setup):
    """A stale checkpoint (earlier config, same output folder) must not be resumed: the run
    starts over and ends with the weights of a fresh run of the new config."""
    old = cfg(setup, checkpoint_steps=2, epochs=2)
    new = cfg(setup, checkpoint_steps=2, epochs=2, lr=5e-4)
    run(setup, "stale", old, stop_after_steps=4)
    assert (setup["root"] / "stale" / "checkpoints" / "checkpoint-4").exists()
    with caplog_at(logging.INFO) as messages:
        model = train(new, SENTS, setup["cache"], setup["root"] / "stale", teacher=setup["teacher"], progress_bar=False)
    assert any("discarding checkpoints" in m and "config.lr" in m for m in messages), messages
    fresh = weights(run(setup, "fresh", new))
    got = weights(model)
    assert all(torch.equal(fresh[k], got[k]) for k in fresh)
    steps = [json.loads(l)["step"] for l in (setup["root"] / "stale" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_incomplete_checkpoint_is_skipped(setup, uninterrupted):
    c, full = cfg(setup, checkpoint_steps=2, epochs=2), uninterrupted
    run(setup, "half_saved", c, stop_after_steps=4)
    ckpts = setup["root"] / "half_saved" / "checkpoints"
    (ckpts / "checkpoint-4" / "leap_run.json").unlink()  # killed while writing checkpoint-4
    with caplog_at(logging.INFO) as messages:
        got = weights(
            train(c, SENTS, setup["cache"], setup["root"] / "half_saved", teacher=setup["teacher"], progress_bar=False)
        )
    assert any("incomplete checkpoint" in m for m in messages) and any("checkpoint-2" in m for m in messages)
    assert all(torch.allclose(full[k], got[k], atol=1e-6) for k in full)


def test_nan_stops_with_step_and_term(setup, monkeypatch):
    real = TeacherCache.get

    def poisoned(self, idx, layers=None):
        out = real(self, idx, layers)
        return {k: v * float("nan") if k == max(out) else v for k, v in out.items()}

    monkeypatch.setattr(TeacherCache, "get", poisoned)
    c = cfg(setup, projection_init="random")
    with pytest.raises(LeapError, match=r"non-finite loss at step 0: term 'final'"):
        run(setup, "nan", c)


@pytest.mark.parametrize(
    "variant", ["baseline", "fixed_depth", "adaptive_layer", "layerskip", "abl_final", "beta0.2", "leap_fix", "leap_xd"]
)
def test_every_variant_trains_its_own_terms(setup, variant):
    """Each variant moves the weights, logs exactly its terms as non-zero, and saves what it
    promises (a shallower student, trained per-layer maps)."""
    from leap.core.layer_maps import LayerMaps

    over = {"n_layers": 4} if variant == "fixed_depth" else {}
    model = run(setup, f"v-{variant}", cfg(setup, variant, max_steps=2, projection_lr=1e-2, **over))
    conf = json.loads((model.parent / "train_config.json").read_text())
    assert conf["steps"] == 2
    trained, init = weights(model), weights(setup["student"])
    moved = [
        k for k in trained if k in init and trained[k].shape == init[k].shape and not torch.equal(trained[k], init[k])
    ]
    assert moved, "training changed no weight"
    last = [json.loads(l) for l in (model.parent / "train_log.jsonl").read_text().splitlines()][-1]
    terms = conf["loss"]["terms"]
    if conf["objective"] in ("leap", "layerskip"):
        for t in ("final", "inter", "exit", "contrast", "late", "depth", "cross"):
            assert (last[t] != 0.0) == (t in terms), (t, last[t])
    if variant == "layerskip":
        assert last["layerskip"] > 0
    if variant == "fixed_depth":
        assert conf["student_layers"] == 4
    maps = LayerMaps.load(model)
    assert (maps is not None) == (variant == "leap_xd")
    if maps is not None:
        assert bool(maps.fitted[:-1].all()) and not bool(maps.fitted[-1])
        assert not torch.allclose(maps.weight[2], torch.eye(32))  # trained away from the identity init


def test_lstsq_layer_maps_are_fitted_after_training(setup):
    from leap.core.layer_maps import LayerMaps

    model = run(setup, "lstsq-maps", cfg(setup, "baseline", max_steps=2, layer_maps="lstsq", layer_maps_fit=40))
    maps = LayerMaps.load(model)
    assert maps is not None and bool(maps.fitted[:-1].all())


def test_a_new_objective_is_one_class_and_one_registry_entry(setup):
    """The registry is the only place that knows objective names: a toy objective (final
    layer distillation only) trains after one ``register`` call."""
    import torch.nn.functional as F

    from leap.training.losses.base import DistillationLoss, pooled_layers
    from leap.training.objectives import OBJECTIVES, register_objective

    class ToyLoss(DistillationLoss):
        def forward(self, sentence_features, labels):
            student = pooled_layers(self.model, list(sentence_features)[0])[-1].float()
            t = self.targets(labels, [self.cache.num_teacher_layers], student.device)[self.cache.num_teacher_layers]
            loss = (1 - F.cosine_similarity(self.projection(student), t, dim=-1)).mean()
            self.last_terms = {"total": float(loss.detach())}
            return loss

    register_objective("toy", ToyLoss)
    try:
        model = run(
            setup,
            "toy",
            make_train_config(
                {"student": setup["student"], "batch_size": 8, "max_steps": 2, "objective": "toy"}, "leap", 0
            ),
        )
        assert json.loads((model.parent / "train_config.json").read_text())["objective"] == "toy"
    finally:
        del OBJECTIVES["toy"]
    with pytest.raises(LeapError, match="unknown objective 'toy'"):
        make_train_config({"objective": "toy"}, "leap", 0)


def test_layer_dropout_only_in_training(tiny_models):
    from leap.training.student import hf_model, load_student

    st = load_student(make_train_config({"student": tiny_models["bert"]}, "layerskip", 0))
    m = hf_model(st)
    drop = LayerDropout(m, p_max=1.0)  # the last layer always passes its input through
    ids = torch.tensor([[2, 10, 11, 3]])
    m.eval()
    h_eval = m(input_ids=ids, output_hidden_states=True).hidden_states
    m.train()
    torch.manual_seed(0)
    h_train = m(input_ids=ids, output_hidden_states=True).hidden_states
    drop.remove()
    assert not torch.equal(h_eval[-1], h_eval[-2])
    assert torch.equal(h_train[-1], h_train[-2])


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda s: make_train_config({"student": s["student"]}, "nope", 0), "unknown variant 'nope'"),
        (
            lambda s: make_train_config({"student": s["student"], "lr_typo": 1}, "leap", 0),
            r"unknown keys \['lr_typo'\]",
        ),
        (lambda s: make_train_config({"student": s["student"], "loss": {"beta": -1}}, "leap", 0), "beta must be >= 0"),
        (
            lambda s: make_train_config({"student": s["student"], "loss": {"tau": 1.5}}, "leap", 0),
            r"tau must lie in \(0, 1\]",
        ),
    ],
    ids=["unknown_variant", "unknown_key", "negative_beta", "tau_above_1"],
)
def test_bad_config_messages_name_the_problem(setup, make, needle):
    with pytest.raises(LeapError, match=needle):
        make(setup)


def test_bad_layer_map_and_cache_mismatch_before_training(setup):
    c = cfg(setup, loss={"focus_layer": 3, "layer_map": [1, 2, 3, 4, 5, 9]})
    with pytest.raises(LeapError, match=r"lacks teacher layers \[9\]|outside the teacher"):
        run(setup, "badmap", c)
    with pytest.raises(LeapError, match="other sentences"):
        train(cfg(setup), SENTS[:-1], setup["cache"], setup["root"] / "mismatch", teacher=setup["teacher"])
    with pytest.raises(LeapError, match="built with teacher"):
        train(cfg(setup), SENTS, setup["cache"], setup["root"] / "mismatch", teacher="other/teacher")
    assert not (setup["root"] / "badmap" / "checkpoints").exists()


@pytest.mark.slow
def test_torchrun_two_processes_gloo(setup, tmp_path):
    script = Path(__file__).with_name("ddp_train.py")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            str(script),
            setup["student"],
            setup["teacher"],
            str(setup["cache"]),
            str(tmp_path / "ddp"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    conf = json.loads((tmp_path / "ddp" / "train_config.json").read_text())
    assert conf["steps"] == 3  # 48 sentences / (8 x 2 processes)
    assert (tmp_path / "ddp" / "model").is_dir()


def test_shipped_configs_give_self_distillation_its_own_layers():
    """A self-distilled run's teacher is its own init: the config's layer map into another
    teacher (all-mpnet-base-v2's 12 layers) must not reach its teacher cache."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    for name in ("cpu.yaml", "config.yaml", "demo.yaml"):
        c = yaml.safe_load((root / "config" / name).read_text())
        known = set(VARIANTS) | set(c.get("custom_variants") or {})
        variants = {v for group in c["variants"].values() for v in group} & known  # deebert reuses baseline
        for v in sorted(variants):
            cfg = make_train_config(
                c["training"], v, 0, (c.get("variant_overrides") or {}).get(v), c.get("sweep"), c.get("custom_variants")
            )
            if cfg.teacher == "self":  # its own layers: the identity map, whatever its depth
                assert cfg.loss.layer_map is None, (name, v)
                assert not cfg.loss.reads_aligned_targets, (name, v)  # and only its final layer


def test_custom_variant_with_another_student_must_set_its_depth():
    """A custom variant that starts from another model must not inherit the config's depth
    (a 12-layer model silently cut to the 6 layers chosen for all-MiniLM-L6-v2)."""
    training = {"student": "packaged:all-MiniLM-L6-v2", "n_layers": 6}
    custom = {"self_big": {"base": "self_xd", "student": "models/all-mpnet-base-v2"}}
    with pytest.raises(LeapError, match=r"self_big.*inherit training.n_layers 6.*set n_layers"):
        make_train_config(training, "self_big", 0, custom=custom)
    custom["self_big"]["n_layers"] = None
    assert make_train_config(training, "self_big", 0, custom=custom).n_layers is None
    custom["self_big"]["n_layers"] = 8
    assert make_train_config(training, "self_big", 0, custom=custom).n_layers == 8


@pytest.mark.parametrize("variant, reads", [("baseline", [2, 4, 6, 8, 10, 12]), ("self_xd", [12]), ("leap_xd", [12])])
def test_objectives_read_the_aligned_teacher_layers_only_with_l_inter(variant, reads):
    """The teacher layers a run reads (and so its teacher cache) follow from L_inter alone."""
    from leap.training.objectives import get_objective

    cfg = make_train_config({"loss": {"layer_map": [2, 4, 6, 8, 10, 12]}}, variant, 0)
    assert cfg.loss.reads_aligned_targets == (len(reads) > 1)
    expected = sorted({*reads, 12})
    assert get_objective(cfg.objective).teacher_layers(cfg, 6, 12) == expected


@pytest.mark.slow
def test_fault_a_full_disk_during_training_stops_in_one_line_and_it_resumes_from_the_last_checkpoint(
    setup, uninterrupted
):
    """Four steps and their checkpoints written; then the kernel refuses the next checkpoint's
    weights (RLIMIT_FSIZE): one line naming the checkpoint folder, no model folder; with space
    back the run resumes from checkpoint-4 and ends with the uninterrupted run's weights."""
    from tests.faults import ONE_LINE, record, run_limited

    c = cfg(setup, checkpoint_steps=2, epochs=2)
    out = setup["root"] / "fulldisk"
    run(setup, "fulldisk", c, stop_after_steps=4)
    limit = (out / "checkpoints" / "checkpoint-4" / "model.safetensors").stat().st_size - 1
    code = ONE_LINE + (
        "import json\nfrom leap.training.config import TrainConfig\nfrom leap.training.run import train\n"
        "c = TrainConfig.from_dict(json.loads(sys.argv[1]))\n"
        "one_line(lambda: train(c, json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], teacher=sys.argv[5], "
        "progress_bar=False))"
    )
    args = (json.dumps(c.to_dict()), json.dumps(SENTS), str(setup["cache"]), str(out), setup["teacher"])
    proc = run_limited(code, limit, setup["root"], *args)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "not enough space to write" in line and "checkpoints" in line, proc.stderr[-3000:]
    assert not (out / "model").exists() and (out / "checkpoints" / "checkpoint-4" / "leap_run.json").exists()
    (out / "train_log.jsonl").unlink()  # Snakemake removes a failed job's outputs
    resumed = weights(run(setup, "fulldisk", c))
    assert all(torch.allclose(uninterrupted[k], resumed[k], atol=1e-6) for k in uninterrupted)
    record(
        "a full disk during training",
        "RLIMIT_FSIZE below the weights' size after checkpoint 4",
        line,
        "nothing: the run resumes from its last complete checkpoint",
    )
