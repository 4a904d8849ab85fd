"""Checkpoints that are not sentence-transformers folders load with mean pooling and the exit
rule; a checkpoint whose pooling cannot be served stops the plan in one line, before any job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from leap.core.builtin import builtin_sentences
from leap.core.exit_config import ExitConfig
from leap.errors import LeapError
from leap.serving.model import load_exit_model
from leap.workflow.checkpoints import NOT_CACHED, PLAIN, ST_FOLDER, pooling_of
from leap.workflow.plan import Plan

from .hub_fixtures import plain_copy


def with_pooling(st_folder, dest, mode):
    shutil.copytree(st_folder, dest)
    cfg_path = next(dest.glob("*_Pooling")) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["pooling_mode"] = mode
    cfg_path.write_text(json.dumps(cfg))
    return dest


def test_each_kind_of_checkpoint_is_named_before_loading(tmp_path, tiny_models):
    assert pooling_of(tiny_models["bert"]) == ST_FOLDER
    assert pooling_of("packaged:all-MiniLM-L6-v2") == ST_FOLDER
    assert pooling_of(str(plain_copy(tiny_models["bert"], tmp_path / "plain"))) == PLAIN
    assert pooling_of("huawei-noah/TinyBERT_General_6L_768D") == NOT_CACHED  # offline, not cached here
    with pytest.raises(LeapError, match="pooling 'cls' cannot be served"):
        pooling_of(str(with_pooling(tiny_models["bert"], tmp_path / "cls", "cls")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LeapError, match="not a model folder"):
        pooling_of(str(tmp_path / "empty"))


def test_a_plain_transformers_checkpoint_serves_mean_pooling_with_the_exit_rule(tmp_path, tiny_models):
    sents = builtin_sentences()[:20]
    plain = plain_copy(tiny_models["distilbert"], tmp_path / "plain")
    model = load_exit_model(str(plain), exit=ExitConfig(theta=0.5, min_layer=3), device="cpu", backend="torch")
    assert type(model[1]).__name__ == "Pooling" and model[1].pooling_mode == "mean"
    emb, layers = model.encode_with_exit_layers(sents)
    assert ((layers >= 3) & (layers <= 6)).all()
    ref = load_exit_model(tiny_models["distilbert"], exit=ExitConfig(strategy="none"), device="cpu", backend="torch")
    full = model.encode(sents, exit=ExitConfig(strategy="none"))
    want = ref.encode(sents)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    assert np.abs(unit(full) - unit(want)).max() < 1e-5  # the same mean pooling as the ST folder


def test_an_unservable_published_checkpoint_stops_the_plan_in_one_line(tmp_path, tiny_models):
    cls = with_pooling(tiny_models["bert"], tmp_path / "cls", "cls")
    cfg = yaml.safe_load((Path(__file__).parents[1] / "config/demo.yaml").read_text())
    cfg["published_models"] = [{"name": "cls-model", "model": str(cls)}]
    with pytest.raises(LeapError) as err:
        Plan(cfg)
    msg = str(err.value)
    assert "published_models 'cls-model'" in msg and "'cls'" in msg and "\n" not in msg
    cfg["published_models"] = [{"name": "plain", "model": str(plain_copy(tiny_models["bert"], tmp_path / "p"))}]
    assert Plan(cfg).pooling == {"plain": PLAIN}
