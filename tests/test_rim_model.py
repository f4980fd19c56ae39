"""RIM: shapes, masking of missing neighbours, attention/aggregation against a naive reference,
and the task seam (neighbours served by the task, cost including the retrieval)."""

import pytest
import torch

from kdrec.data.spec import FeatureMap, FieldInfo
from kdrec.errors import ConfigError
from kdrec.models.ctr.rim import RIM, RIMConfig

FM = FeatureMap("t", [FieldInfo(f"f{i}", 9) for i in range(4)])


def _rim(**kw):
    torch.manual_seed(0)
    m = RIM(FM, RIMConfig(embed_dim=3, hidden=[8, 4], dropout=0.0, **kw))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m.eval()


def _inputs(B=5, K=3):
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 9, (B, 4), generator=g), torch.randint(0, 9, (B, K, 4), generator=g),
            torch.randint(0, 2, (B, K), generator=g).float())


def test_shapes_and_pairwise_count():
    m = _rim()
    x, nx, ny = _inputs()
    assert m(x, nx, ny).shape == (5,)
    assert m.pair_i.numel() == 9 * 8 // 2  # 2F+1 = 9 vectors
    assert m.represent(x, nx, ny).shape == (5, (4 + 1) * 3)
    assert m.represent(x, nx, ny, kind="hidden").shape == (5, 4)


def test_aggregation_matches_naive_attention():
    m = _rim()
    x, nx, ny = _inputs()
    t, r, lbl = m.aggregate(x, nx, ny)
    for b in range(x.shape[0]):  # naive per-row reference
        tv = m.embedding(x[b:b + 1]).flatten()
        keys = torch.stack([m.embedding(nx[b, k:k + 1]).flatten() for k in range(nx.shape[1])])
        a = torch.softmax(keys @ m.attn_query(tv), 0)
        assert torch.allclose(r[b].flatten(), a @ keys, atol=1e-5)
        assert torch.allclose(lbl[b], a @ m.label_embedding(ny[b].long()), atol=1e-5)


def test_missing_neighbours_are_ignored():
    m = _rim()
    x, nx, ny = _inputs()
    ny[:, 2] = -1  # third neighbour missing
    out = m(x, nx, ny)
    nx2 = nx.clone()
    nx2[:, 2] = (nx2[:, 2] + 1) % 9  # whatever sits in a missing slot does not matter
    assert torch.allclose(out, m(x, nx2, ny))
    ny[:] = -1  # no neighbour at all: finite, aggregated parts are zero
    _, r, lbl = m.aggregate(x, nx, ny)
    assert torch.isfinite(m(x, nx, ny)).all() and (r == 0).all() and (lbl == 0).all()


def test_called_without_neighbours_says_how_to_call_it():
    with pytest.raises(ConfigError, match="neighbours"):
        _rim()(torch.zeros(2, 4, dtype=torch.long))


def test_bad_retrieval_key_is_a_config_error():
    with pytest.raises(ConfigError, match="kk"):
        RIM(FM, RIMConfig(retrieval={"kk": 3}))


def test_task_serves_neighbours_and_profile_counts_retrieval(tmp_path):
    from kdrec.data.spec import CTRDataset, CTRSplit
    from kdrec.tasks.ctr import CTRBatch, CTRTask

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 9, (300, 4), generator=g)
    y = (x[:, 0] > 4).float()
    splits = {"train": CTRSplit(x[:200], y[:200]), "valid": CTRSplit(x[200:250], y[200:250]),
              "test": CTRSplit(x[250:], y[250:])}
    task = CTRTask(CTRDataset(FM, splits, signature="t"), torch.device("cpu"), 32, 64)
    task.retrieval.cache_dir = tmp_path
    m = RIM(FM, RIMConfig(embed_dim=3, hidden=[8], retrieval={"k": 4}))
    idx = torch.tensor([3, 7])
    inputs = task.model_inputs(m, "train", idx, task.splits["train"].x[idx])
    assert len(inputs) == 3 and inputs[1].shape == (2, 4, 4)
    loss = task.task_loss(m, CTRBatch(idx, task.splits["train"].x[idx], task.splits["train"].y[idx]))
    assert torch.isfinite(loss)
    assert task.predict(m, "valid").shape == (50,)
    prof = task.profile(m, latency=False)
    assert prof["flops_retrieval"] > 0
    assert prof["flops_per_sample"] == pytest.approx(prof["flops_model"] + prof["flops_retrieval"])
    # plain models are still called with x alone
    from kdrec.models.ctr.fm import FM as FMModel, FMConfig

    assert len(task.model_inputs(FMModel(FM, FMConfig()), "train", idx, x[idx])) == 1
