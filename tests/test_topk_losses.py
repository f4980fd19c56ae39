"""Each top-K distiller's loss on tiny hand-computed cases."""

import math

import pytest
import torch

from kdrec.distill.topk.cd import cd_loss
from kdrec.distill.topk.common import (DistillExperts, Experts, annealed_temperature, gumbel_softmax_select,
                                       plackett_luce_relaxed, relaxed_ranking_loss, sample_outside,
                                       sample_ranked)
from kdrec.distill.topk.hetcomp import ensemble_topk, ndcg_overlap
from kdrec.distill.topk.phr import PersonalBridge
from kdrec.distill.topk.rd import rd_weights
from kdrec.distill.topk.td import full_topology_loss, hierarchical_topology_loss


def test_rrd_three_items_equals_plackett_luce_by_hand():
    a, b, c = 0.3, -0.2, 0.9  # interesting (teacher order) a, b; uninteresting c
    loss = relaxed_ranking_loss(torch.tensor([[a, b]]), torch.tensor([[c]]))
    e = math.exp
    p = e(a) / (e(a) + e(b) + e(c)) * e(b) / (e(b) + e(c))
    assert loss.item() == pytest.approx(-math.log(p), rel=1e-6)


def test_rrd_ignores_order_among_uninteresting_and_is_stable():
    s1 = torch.tensor([[2.0, 1.0, 0.5]])
    x = relaxed_ranking_loss(s1, torch.tensor([[0.1, -3.0]]))
    y = relaxed_ranking_loss(s1, torch.tensor([[-3.0, 0.1]]))
    assert x.item() == pytest.approx(y.item())
    big = relaxed_ranking_loss(torch.tensor([[500.0, 400.0]]), torch.tensor([[450.0]]))
    assert torch.isfinite(big).all()
    assert big.item() == pytest.approx(50.0, rel=1e-4)  # -log P ~ (450 - 400) at the 2nd position


def test_full_plackett_luce_without_rest():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    e = math.exp
    p = e(1) / (e(1) + e(0) + e(-1)) * e(0) / (e(0) + e(-1)) * 1.0
    got = plackett_luce_relaxed(s, torch.tensor([float("-inf")]))
    assert got.item() == pytest.approx(-math.log(p), rel=1e-6)


def test_rd_static_and_dynamic_weights():
    static = torch.tensor([[0.7, 0.3]])
    s_top = torch.tensor([[1.0, 2.0]])
    assert torch.equal(rd_weights(s_top, None, static, 100, 0.1), static.expand(1, 2))
    # 4 samples: 3 score above item 0 (rank estimate floor(99*0.75)+1 = 75), none above item 1 (rank 1)
    s_dyn = torch.tensor([[1.5, 1.6, 1.7, 0.0]])
    w = rd_weights(s_top, s_dyn, static, 100, 0.1)
    d0, d1 = math.tanh(0.1 * (75 - 0)), max(math.tanh(0.1 * (1 - 1)), 0.0)
    raw = torch.tensor([0.7 * d0, 0.3 * d1])
    assert torch.allclose(w[0], raw / raw.sum())


def test_cd_soft_label_bce_by_hand():
    s, t = torch.tensor([[0.5, -1.0]]), torch.tensor([[2.0, 0.0]])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = 0.0
    for si, ti in ((0.5, 2.0), (-1.0, 0.0)):
        q = sig(ti / 2.0)
        want += -(q * math.log(sig(si)) + (1 - q) * math.log(1 - sig(si)))
    assert cd_loss(s, t, t1=2.0, t2=0.0).item() == pytest.approx(want, rel=1e-6)


def test_de_single_expert_is_plain_hint_regression_and_selection_is_hard_when_cold():
    torch.manual_seed(0)
    de = DistillExperts(1, 2, 3)
    s, t = torch.randn(4, 2), torch.randn(4, 3)
    want = (t - de.experts(s)[:, 0]).pow(2).sum()
    assert de.loss(s, t, 1.0).item() == pytest.approx(want.item(), rel=1e-6)
    a = gumbel_softmax_select(torch.tensor([[0.2, 0.5, 0.3]] * 5), 1e-10)
    assert torch.allclose(a.sum(1), torch.ones(5)) and ((a == 0) | (a == 1)).all()
    assert annealed_temperature(0, 1.0, 1e-10, 10) == 1.0
    assert annealed_temperature(5, 1.0, 1e-10, 10) == pytest.approx(1e-5)
    assert annealed_temperature(50, 1.0, 1e-10, 10) == pytest.approx(1e-10)


def test_de_mixture_output_with_fixed_selection():
    torch.manual_seed(1)
    de = DistillExperts(2, 2, 2)
    s, t = torch.randn(3, 2), torch.randn(3, 2)
    out = de.experts(s)  # [3, 2, 2]
    # batched experts equal two separate MLPs
    for m in range(2):
        h = torch.relu(s @ de.experts.w1[m] + de.experts.b1[m])
        assert torch.allclose(out[:, m], h @ de.experts.w2[m] + de.experts.b2[m], atol=1e-6)


def test_phr_starts_from_the_shared_bridge():
    torch.manual_seed(0)
    b = PersonalBridge(2, 3)
    s, t = torch.randn(4, 2), torch.randn(4, 3)
    want = (t - s @ b.shared.T).pow(2).sum()
    assert b.loss(s, t).item() == pytest.approx(want.item(), rel=1e-6)
    with torch.no_grad():
        b.net[2].bias.fill_(1.0)
    W = b.shared + 1.0
    assert torch.allclose(b(s, t), s @ W.T, atol=1e-6)


def test_ftd_hand_case():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # cosine 0
    t = torch.tensor([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])  # cosine 1
    assert full_topology_loss(s, t).item() == pytest.approx(2.0)


def test_htd_entity_level_within_groups_and_group_level():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    group = torch.tensor([0, 0, 1])
    # entity level: pair (0,1) in both orders, (0 - 1)^2 each -> 2; diagonal terms 0
    # group level: prototypes s: [.5,.5] & [1,1] (cos 1), t: [1,0] & [1,1] (cos 1/sqrt2)
    g = (1 - 1 / math.sqrt(2)) ** 2 * 2
    got = hierarchical_topology_loss(s, t, group, num_groups=3)  # group 2 empty: ignored
    assert got.item() == pytest.approx(2.0 + g, rel=1e-5)


def test_hetcomp_ensemble_and_ndcg():
    a = torch.tensor([[0, 1, 2]])
    b = torch.tensor([[1, 3, 0]])
    # reciprocal rank: item0 1 + 1/3, item1 1/2 + 1, item2 1/3, item3 1/2
    assert ensemble_topk([a, b], 5, 3).tolist() == [[1, 0, 3]]
    t = torch.tensor([[4, 5, 6], [4, 5, 6]])
    st = torch.tensor([[6, 5, 4], [1, 2, 3]])
    nd = ndcg_overlap(st, t, 10)
    assert nd[0].item() == pytest.approx(1.0) and nd[1].item() == 0.0


def test_samplers_respect_exclusions_and_order():
    g = torch.Generator().manual_seed(0)
    bad = lambda rows, ids: (ids % 2 == 0) | (ids == rows)  # noqa: E731
    x = sample_outside(5, 20, 30, g, "cpu", bad)
    assert not bad(torch.arange(5)[:, None].expand_as(x), x).any()
    top = torch.arange(100).repeat(3, 1) + 1000
    s = sample_ranked(top, 10, 10.0, True, g)
    assert (s.diff(1) > 0).all() and s.shape == (3, 10)  # kept in teacher order, no repeats
    assert torch.equal(sample_ranked(top, 4, 10.0, False, g), top[:, :4])


def test_expert_mixture_paths_match_the_per_expert_reference():
    torch.manual_seed(2)
    e = Experts(5, 3, 4, 6)
    x = torch.randn(7, 3, requires_grad=True)
    a = torch.softmax(torch.randn(7, 5), 1)
    keep = torch.rand(7, 5) < 0.4
    keep[torch.arange(7), a.argmax(1)] = True
    for k in (None, keep):
        w = a if k is None else a * k
        ref = (e(x) * w[:, :, None]).sum(1)  # every expert evaluated, weights outside keep zeroed
        g_ref = torch.autograd.grad(ref.pow(2).sum(), [x, e.w1, e.w2])
        got = e.mixture(x, a, k)
        g_got = torch.autograd.grad(got.pow(2).sum(), [x, e.w1, e.w2])
        assert torch.allclose(got, ref, atol=1e-6)
        assert all(torch.allclose(u, v, atol=1e-5) for u, v in zip(g_got, g_ref))


def test_de_dropping_negligible_experts_matches_all_experts():
    torch.manual_seed(2)
    full, sparse = DistillExperts(5, 3, 6, drop_below=0.0), DistillExperts(5, 3, 6, drop_below=1e-6)
    sparse.load_state_dict(full.state_dict())
    s, t, w = torch.randn(7, 3), torch.randn(7, 6), torch.rand(7)
    for temperature in (1.0, 1e-2, 1e-8):  # soft (nothing dropped) to one-hot
        torch.manual_seed(5)
        a = full.loss(s, t, temperature, weight=w)
        torch.manual_seed(5)  # same Gumbel noise
        b = sparse.loss(s, t, temperature, weight=w)
        assert a.item() == pytest.approx(b.item(), rel=1e-5)
