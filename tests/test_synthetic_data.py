"""The embedded `synthetic` data set: seeded, power-law ids, labels from a hidden model that kdrec's
own DAGFM represents exactly (docs/data.md)."""

from __future__ import annotations

import pytest
import torch

from kdrec.data.sources.synthetic import SyntheticConfig, build, generate
from kdrec.data.spec import FeatureMap, FieldInfo
from kdrec.errors import ConfigError
from kdrec.models.ctr.dagfm import DAGFM, DAGFMConfig
from kdrec.schema import build_dataclass

SMALL = SyntheticConfig(num_rows=6000, num_fields=6, vocab_size=40, latent_dim=3)


def test_same_config_same_content_other_seed_other_content():
    a, b = build(SMALL, None), build(SMALL, None)
    for k in ("train", "valid", "test"):
        assert torch.equal(a.splits[k].x, b.splits[k].x) and torch.equal(a.splits[k].y, b.splits[k].y)
    assert a.signature == b.signature
    c = build(SyntheticConfig(**{**SMALL.__dict__, "seed": 7}), None)
    assert not torch.equal(a.splits["train"].x, c.splits["train"].x)
    assert a.signature != c.signature


def test_ids_follow_the_power_law_and_the_positive_rate_is_as_configured():
    cfg = SyntheticConfig(num_rows=50_000, num_fields=4, vocab_size=50, zipf_exponent=1.1)
    x, y, p, _ = generate(cfg)
    counts = torch.bincount(x[:, 0], minlength=50).double()
    expected = 1.0 / torch.arange(1, 51, dtype=torch.float64) ** 1.1
    expected = expected / expected.sum() * cfg.num_rows
    assert float(counts[0]) == pytest.approx(float(expected[0]), rel=0.03)  # the head
    assert counts[:5].sum() > 0.4 * cfg.num_rows and counts[-10:].sum() < 0.07 * cfg.num_rows
    assert float(p.mean()) == pytest.approx(cfg.positive_rate, abs=1e-6)
    assert float(y.mean()) == pytest.approx(cfg.positive_rate, abs=0.01)


def test_every_order_carries_its_configured_share_of_the_logit():
    x, _, _, hidden = generate(SMALL)
    first, second, third = hidden.terms(x)
    for t in (second, third):  # the sparse DAG leaves real interactions in both orders
        assert float(t.std()) > 0
    cfg = SyntheticConfig(**{**SMALL.__dict__, "order1": 0.0, "order3": 0.0})
    z = hidden.logit(x, cfg)
    assert float(z.std()) == pytest.approx(cfg.order2, rel=1e-9)
    assert float(torch.corrcoef(torch.stack([z, second]))[0, 1]) == pytest.approx(1.0, abs=1e-12)


def test_kdrec_dagfm_represents_the_hidden_logit_exactly():
    """DAGFM-inner of depth 2 with embed_dim = latent_dim + 1: embeddings [u, w - sum u], connection
    I, edge weights A (layer 1) and B (layer 2) on every embedding dim but the last, read-out
    weights order_t / std_t per layer, reproduces the generator's noiseless logit."""
    cfg = SMALL
    x, _, _, hidden = generate(cfg)
    f, k = cfg.num_fields, cfg.latent_dim
    fmap = FeatureMap("synthetic", [FieldInfo(f"f{i}", cfg.vocab_size) for i in range(f)])
    model = DAGFM(fmap, DAGFMConfig(embed_dim=k + 1, interaction="inner", depth=2)).double()
    terms = hidden.terms(x)
    with torch.no_grad():
        table = torch.cat([hidden.u, (hidden.w - hidden.u.sum(-1))[..., None]], -1)  # [F, V, k+1]
        model.embedding.weight.copy_(table.reshape(f * cfg.vocab_size, k + 1))
        model.dag.connect.copy_(torch.eye(f))
        model.dag.p.zero_()
        model.dag.p[0, :, :, :k] = hidden.a[..., None]
        model.dag.p[1, :, :, :k] = hidden.b[..., None]
        weights = [order / t.std() for order, t in zip((cfg.order1, cfg.order2, cfg.order3), terms)]
        model.readout.weight.copy_(torch.stack(weights).repeat_interleave(f)[None])
        model.readout.bias.fill_(-sum(float(wt * t.mean()) for wt, t in zip(weights, terms)))
        out = model(x)
    assert torch.allclose(out, hidden.logit(x, cfg), atol=1e-9)


def test_bayes_metrics_of_the_true_probabilities_are_in_the_feature_map():
    d = build(SMALL, None)
    bayes = d.feature_map.extra["hidden_model"]["bayes"]
    assert set(bayes) == {"valid", "test"}
    assert 0.5 < bayes["test"]["auc"] < 1.0 and bayes["test"]["logloss"] > 0


@pytest.mark.parametrize("bad, key", [({"edge_density": 0.0}, "edge_density"),
                                      ({"num_fields": 2}, "num_fields"),
                                      ({"positive_rate": 1.0}, "positive_rate")])
def test_bad_values_are_one_config_error_naming_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        build_dataclass(SyntheticConfig, {**SMALL.__dict__, **bad}, "dataset (synthetic)")


def test_a_split_that_does_not_sum_to_one_is_refused():
    with pytest.raises(ConfigError, match="split"):
        generate(SyntheticConfig(**{**SMALL.__dict__, "split": [0.8, 0.1, 0.2]}))
