import itertools

import torch
import pytest

from kdrec.data.spec import FeatureMap, FieldInfo
from kdrec.models.ctr.fm import fm_pairwise
from kdrec.models.registry import build_model


def fmap(fields=5, vocab=7):
    return FeatureMap("t", [FieldInfo(f"f{i}", vocab) for i in range(fields)])


def test_fm_pairwise_matches_naive_double_loop():
    e = torch.randn(4, 5, 3, dtype=torch.float64)
    naive = sum((e[:, i] * e[:, j]).sum(-1) for i, j in itertools.combinations(range(5), 2))
    assert torch.allclose(fm_pairwise(e), naive)


def test_lr_is_sum_of_feature_weights():
    m = build_model({"name": "lr"}, fmap())
    x = torch.randint(0, 7, (6, 5))
    w = m.linear.embedding.weight.squeeze(-1)
    expected = torch.stack([w[x[:, f] + 7 * f] for f in range(5)], 1).sum(1) + m.linear.bias
    assert torch.allclose(m(x), expected)


def test_models_forward_shapes_and_int32_ids():
    x = torch.randint(0, 7, (9, 5), dtype=torch.int32)
    for cfg in ({"name": "lr"}, {"name": "fm", "embed_dim": 4}, {"name": "dnn", "embed_dim": 4, "hidden": [8]}):
        out = build_model(cfg, fmap())(x)
        assert out.shape == (9,) and out.dtype == torch.float32


def test_tiny_overfit_dnn_loss_falls():
    torch.manual_seed(0)
    m = build_model({"name": "dnn", "embed_dim": 4, "hidden": [32]}, fmap())
    x = torch.randint(0, 7, (64, 5))
    y = torch.randint(0, 2, (64,)).float()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_dropout_has_the_law_of_nn_dropout():
    from kdrec.models.layers.dropout import Dropout

    torch.manual_seed(0)
    d = Dropout(0.3)
    x = torch.ones(200_000)
    y = d(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005  # keep probability 1 - p
    # inverted scaling with p rounded to 2^-15 on CPU (see layers/dropout.py): within 3e-5 of 1/0.7
    scale = 1 / (1 - round(0.3 * 2**15) / 2**15)
    assert abs(scale - 1 / 0.7) < 3e-5
    assert torch.allclose(y[kept], torch.full_like(y[kept], scale))
    assert abs(y.mean().item() - 1.0) < 0.01  # unbiased
    d.eval()
    assert torch.equal(d(x), x)


def test_xavier_embedding_init_is_per_field():
    import math

    from kdrec.errors import ConfigError
    from kdrec.models.layers.embedding import FieldEmbedding

    torch.manual_seed(0)
    emb = FieldEmbedding([5, 2000], 10, init="xavier")
    small, large = emb.weight[:5], emb.weight[5:]
    # xavier-uniform of each field's own table: |w| <= sqrt(6 / (V_f + D)), variance bound^2 / 3
    assert small.abs().max() <= math.sqrt(6 / 15) and small.abs().max() > 0.3
    bound = math.sqrt(6 / 2010)
    assert large.abs().max() <= bound
    assert abs(large.var().item() - bound**2 / 3) < 0.05 * bound**2
    with pytest.raises(ConfigError, match="embed_init"):
        FieldEmbedding([3], 4, init="zeros")
