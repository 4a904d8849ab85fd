import torch

from leap.core.pooling import mean_pool


def test_mean_pool_excludes_padding():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 5.0], [7.0, 9.0], [9.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out = mean_pool(h, mask)
    assert torch.allclose(out, torch.tensor([[2.0, 3.0], [7.0, 5.0]]))


def test_mean_pool_same_alone_or_padded():
    torch.manual_seed(0)
    h = torch.randn(1, 4, 8)
    padded = torch.cat([h, torch.randn(1, 3, 8)], dim=1)
    alone = mean_pool(h, torch.ones(1, 4, dtype=torch.long))
    inbatch = mean_pool(padded, torch.tensor([[1, 1, 1, 1, 0, 0, 0]]))
    assert torch.allclose(alone, inbatch, atol=1e-7)


def test_mean_pool_matches_sentence_transformers_pooling():
    from sentence_transformers.sentence_transformer.modules import Pooling

    torch.manual_seed(0)
    h = torch.randn(3, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    ref = Pooling(16, pooling_mode="mean")({"token_embeddings": h, "attention_mask": mask})["sentence_embedding"]
    assert torch.allclose(mean_pool(h, mask), ref, atol=1e-6)


def test_mean_pool_rejects_bad_shapes():
    import pytest

    with pytest.raises(ValueError, match="hidden"):
        mean_pool(torch.zeros(2, 3), torch.ones(2, 3))
