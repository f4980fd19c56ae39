"""DAGFM: the vectorized DAG layer against a naive per-field loop for inner/outer/kernel, the
identity-initialised connection matrix, the upper-triangular mask and DAGFM+'s MLP wiring."""

from __future__ import annotations

import pytest
import torch

from kdrec.data.spec import FeatureMap, FieldInfo
from kdrec.models.layers.dag import DAGInteraction
from kdrec.models.registry import build_model

F_, D_, T_ = 4, 3, 3


def naive_states(dag: DAGInteraction, e: torch.Tensor) -> list[torch.Tensor]:
    """h_j(0) = sum_i C_ji e_i;  h_j(t) = h_j(0) * sum_{i<=j} edge_ij(h_i(t-1)), one field at a time."""
    b, f, d = e.shape
    h0 = torch.zeros(b, f, d)
    for j in range(f):
        for i in range(f):
            h0[:, j] += dag.connect[j, i] * e[:, i]
    states, h = [h0], h0
    for t in range(dag.depth):
        nxt = torch.zeros(b, f, d)
        for j in range(f):
            agg = torch.zeros(b, d)
            for i in range(j + 1):  # i <= j: the DAG's edges, self loop included
                if dag.interaction == "inner":
                    agg += dag.p[t, i, j] * h[:, i]
                elif dag.interaction == "outer":
                    agg += (h[:, i] @ dag.p[t, i, j])[:, None] * dag.q[t, i, j]
                else:
                    agg += h[:, i] @ dag.p[t, i, j].T  # W_ij h_i
            nxt[:, j] = h0[:, j] * agg
        states.append(nxt)
        h = nxt
    return states


@pytest.mark.parametrize("interaction", ["inner", "outer", "kernel"])
def test_dag_matches_naive_loop(interaction):
    torch.manual_seed(0)
    dag = DAGInteraction(F_, D_, T_, interaction)
    with torch.no_grad():  # a non-identity connection matrix exercises the mixing too
        dag.connect.add_(0.3 * torch.randn(F_, F_))
    e = torch.randn(5, F_, D_)
    got = torch.stack(dag(e), 1)
    ref = torch.stack(naive_states(dag, e), 1)
    assert got.shape == (5, T_ + 1, F_, D_)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("interaction", ["inner", "outer", "kernel"])
def test_lower_triangle_weights_are_inert(interaction):
    """Edges i > j are not in the DAG: changing their weights must not change the output."""
    torch.manual_seed(1)
    dag = DAGInteraction(F_, D_, 2, interaction)
    e = torch.randn(3, F_, D_)
    before = torch.stack(dag(e), 1)
    with torch.no_grad():
        lower = torch.ones(F_, F_).tril(-1).bool()
        dag.p[:, lower] += 5.0
        if dag.q is not None:
            dag.q[:, lower] -= 5.0
    torch.testing.assert_close(torch.stack(dag(e), 1), before)
    with torch.no_grad():  # ...while an upper-triangle weight does change it
        dag.p[:, 0, F_ - 1] += 1.0
    assert not torch.allclose(torch.stack(dag(e), 1), before)


def test_connection_matrix_starts_at_identity_and_learns():
    dag = DAGInteraction(F_, D_, 1, "inner")
    torch.testing.assert_close(dag.connect.detach(), torch.eye(F_))
    e = torch.randn(2, F_, D_)
    torch.testing.assert_close(dag(e)[0], e)  # layer 0 is e' = C e = e at init
    torch.stack(dag(e)).sum().backward()
    assert dag.connect.grad is not None and dag.connect.grad.abs().sum() > 0


def test_first_layer_is_second_order_field_interaction():
    """With C = I and inner edges, h_j(1) = e_j * sum_{i<=j} p_ij * e_i: a weighted FM-like term."""
    torch.manual_seed(2)
    dag = DAGInteraction(2, 1, 1, "inner")
    e = torch.tensor([[[2.0], [3.0]]])
    p = dag.p.detach()[0, :, :, 0]
    h1 = dag(e)[1][0, :, 0]
    torch.testing.assert_close(h1, torch.tensor([2.0 * p[0, 0] * 2.0,
                                                 3.0 * (p[0, 1] * 2.0 + p[1, 1] * 3.0)]))


def test_dagfm_readout_and_plus_wiring():
    fm = FeatureMap("t", [FieldInfo(f"f{i}", 5) for i in range(F_)])
    torch.manual_seed(3)
    m = build_model({"name": "dagfm", "embed_dim": D_, "interaction": "outer", "depth": 2}, fm)
    x = torch.randint(0, 5, (6, F_))
    e = m.embedding(x)
    pooled = torch.stack(m.dag(e), 1).sum(-1).flatten(1)  # F(T+1) values
    assert pooled.shape == (6, F_ * 3)
    torch.testing.assert_close(m(x), (pooled @ m.readout.weight.T + m.readout.bias).squeeze(-1))

    plus = build_model({"name": "dagfm_plus", "embed_dim": D_, "depth": 2, "mlp_hidden": [8]}, fm)
    plus.eval()
    e = plus.embedding(x)
    states = torch.stack(plus.dag(e), 1)
    want = (plus.readout(states.sum(-1).flatten(1)).squeeze(-1)
            + plus.mlp(states.sum(1).flatten(1)).squeeze(-1))
    torch.testing.assert_close(plus(x), want)


def test_edge_init_follows_the_official_code():
    """Official Model/DAGFM.py: inner p = torch.randn(F, F, D) (standard normal, never re-initialised);
    outer p and q xavier-normal with gain 1.414 per layer."""
    torch.manual_seed(0)
    f, d, t = 10, 10, 3
    inner = DAGInteraction(f, d, t, "inner")
    assert inner.p.shape == (t, f, f, d)
    assert abs(inner.p.std().item() - 1.0) < 0.05 and abs(inner.p.mean().item()) < 0.05
    xavier_std = 1.414 * (2.0 / (f * d + f * d)) ** 0.5  # fan_in = fan_out = F*D for [F, F, D]
    outer = DAGInteraction(f, d, t, "outer")
    for w in (outer.p, outer.q):
        assert abs(w.std().item() / xavier_std - 1.0) < 0.05



def test_the_removed_edge_init_option_is_refused_by_name():
    """kdrec's earlier xavier inner init was measured not better (docs/kd_dagfm.md) and removed: a
    config that still asks for it gets one error naming the key, not a silently ignored setting;
    an old run's stored config with the kept value (``official``) still loads."""
    from kdrec.errors import KdrecError

    fm = FeatureMap("t", [FieldInfo(f"f{i}", 5) for i in range(F_)])
    with pytest.raises(KdrecError, match="edge_init='xavier' was removed"):
        build_model({"name": "dagfm", "embed_dim": D_, "edge_init": "xavier"}, fm)
    old = build_model({"name": "dagfm_plus", "embed_dim": D_, "edge_init": "official"}, fm)
    assert old.dag.p.std().item() > 0.5  # the official N(0, 1) inner edges
