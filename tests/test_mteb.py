"""MTEB 2.x runs an exit-enabled model through its own SentenceTransformer support, offline,
on a local STS task; its score equals the one computed here on the same exited embeddings."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr

mteb = pytest.importorskip("mteb", reason="mteb is an optional extra: pip install -e .[mteb]")


def local_sts_task(df):
    from datasets import Dataset, DatasetDict
    from mteb.mocks.mock_tasks.sts import MockSTSTask

    class LeapLocalSTS(MockSTSTask):
        metadata = MockSTSTask.metadata.model_copy(update={"name": "LeapLocalSTS"})
        min_score, max_score = 0, 1

        def load_data(self, num_proc=None, **kwargs):
            self.dataset = DatasetDict(
                {
                    "test": Dataset.from_dict(
                        {
                            "sentence1": df["sentence1"].tolist(),
                            "sentence2": df["sentence2"].tolist(),
                            "score": df["score"].tolist(),
                        }
                    )
                }
            )
            self.data_loaded = True

    return LeapLocalSTS()


def test_mteb_scores_the_exited_embeddings_offline(tiny_models):
    from leap.core.exit_config import ExitConfig
    from leap.serving.model import load_exit_model
    from leap.workflow.data import demo_pairs

    df = demo_pairs(80)
    df = df[df["split"] == "test"]
    model = load_exit_model(tiny_models["bert"], exit=ExitConfig(strategy="none"), device="cpu")
    lv = model.layer_embeddings(df["sentence1"].tolist())
    adjacent = torch.nn.functional.cosine_similarity(lv[2], lv[1], dim=-1)
    model.with_exit(ExitConfig(theta=float(adjacent.median()), min_layer=3))  # about half exit at layer 3
    _, layers = model.encode_with_exit_layers(df["sentence1"].tolist())
    assert len(set(layers.tolist())) > 1  # a mix of exit layers: the score is an exit score
    res = mteb.evaluate(model, local_sts_task(df), cache=None, show_progress_bar=False, co2_tracker=False)
    score = res.task_results[0].scores["test"][0]["cosine_spearman"]
    a, b = model.encode(df["sentence1"].tolist()), model.encode(df["sentence2"].tolist())
    assert score == pytest.approx(spearmanr((a * b).sum(-1), df["score"]).statistic, abs=1e-6)
    meta = mteb.models.model_meta.ModelMeta._from_sentence_transformer_model(model)
    assert meta.name == f"leap-exit/{tiny_models['bert'].rstrip('/').split('/')[-1]}" and meta.embed_dim == 32
