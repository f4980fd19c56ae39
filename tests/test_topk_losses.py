"""Each top-K distiller's loss on tiny hand-computed cases."""

import math

import pytest
import torch

from kdrec.distill.topk.cd import cd_loss
from kdrec.distill.topk.common import (DistillExperts, Experts, annealed_temperature, gather_rows,
                                       gumbel_softmax_select, plackett_luce_relaxed, relaxed_ranking_loss,
                                       sample_outside, sample_ranked)
from kdrec.distill.topk.hetcomp import ensemble_topk, ndcg_overlap
from kdrec.eval.ranking import CSR
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


def test_plackett_luce_matches_logcumsumexp_in_float64():
    """The shifted-cumsum arithmetic against the textbook form, values and gradients, on rows
    whose scores span up to ~600 (one row's rest is -inf: no uninteresting items)."""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(64, 40, generator=g, dtype=torch.float64) * torch.logspace(-1, 2.5, 64, dtype=torch.float64)[:, None]
    rest = torch.randn(64, generator=g, dtype=torch.float64) * 50
    rest[3] = float("-inf")
    a, b = s.clone().requires_grad_(), s.clone().requires_grad_()
    got = plackett_luce_relaxed(a, rest)
    tail = torch.logcumsumexp(b.flip(1), 1).flip(1)
    want = -(b - torch.logaddexp(tail, rest[:, None])).sum(1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-9)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-10)
    assert plackett_luce_relaxed(s.float(), rest.float()).dtype == torch.float32


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


# ---------------------------------------------------------------- reference behaviours (issue 14)
def _lse(xs):
    return math.log(sum(math.exp(x) for x in xs))


def _hetcomp_case():
    """1 user, 6 items; item 0 observed (the positive); target [1, 2] (K = 2: half = tenth = 1)."""
    from types import SimpleNamespace

    from kdrec.distill.topk.hetcomp import CurriculumState, HetComp

    s = [0.4, 1.0, -0.3, 0.2, -1.1, 0.7]
    h = HetComp(HetComp.Config())
    h.ctx = SimpleNamespace(task=SimpleNamespace(num_users=1, csr={"train": CSR(torch.tensor([0]), torch.tensor([0]), 1)}))
    h._aux = {"curriculum": CurriculumState(1)}
    h.targets = torch.tensor([[[1, 2]], [[1, 2]]])  # 2 checkpoints
    h.pos = torch.tensor([[0]])
    U, I = torch.ones(1, 1), torch.tensor(s)[:, None]
    return h, s, U, I, SimpleNamespace(users=torch.tensor([0]))


def _hetcomp_reference(u, I, observed, pos, target):
    """The textbook form: full clamped scores, masked, one logsumexp per rest."""
    S = (u @ I.T).clamp(-40, 40)
    unobserved = S.masked_fill(observed, float("-inf"))

    def log_rest(listed):
        return torch.logsumexp(unobserved.scatter(1, listed, float("-inf")), 1)

    s_pos, s_tgt = S.gather(1, pos), S.gather(1, target)
    K = target.shape[1]
    tops = torch.cat([s_pos, s_tgt], 1)
    overall = -(tops - torch.logaddexp(tops, log_rest(target)[:, None])).sum(1)
    half, tenth = K // 2, K // 10
    lr_half = log_rest(target[:, :half])
    listwise = (plackett_luce_relaxed(s_pos, lr_half)
                + 0.5 * (plackett_luce_relaxed(s_tgt[:, :half], lr_half)
                         + plackett_luce_relaxed(s_tgt[:, :tenth], log_rest(target[:, :tenth]))))
    return overall, listwise


@pytest.mark.parametrize("chunk,past_clamp", [(None, True), (7, True), (60, True), (7, False)])
def test_hetcomp_losses_match_the_full_matrix_form(chunk, past_clamp):
    """Values and gradients against the textbook form, on scores past the clamp (|s| > 40) or
    all within it, with a target item that is a train item (excluded from every rest), the items
    in one block or in blocks of 7 (the last one short)."""
    from kdrec.distill.topk.hetcomp import hetcomp_losses

    g = torch.Generator().manual_seed(3)
    B, n, d, K = 5, 60, 4, 10
    u0 = torch.randn(B, d, generator=g, dtype=torch.float64) * 2
    I0 = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
    if past_clamp:
        u0[0] *= 8  # row 0's scores reach past +-40
    observed = torch.rand(B, n, generator=g) < 0.2
    target = torch.stack([torch.randperm(n, generator=g)[:K] for _ in range(B)])
    observed[1, target[1, 7]] = True
    pos = torch.stack([torch.nonzero(observed[b])[:2, 0] for b in range(B)])
    assert ((u0 @ I0.T).abs() > 40).any() == past_clamp
    for which in (0, 1):
        a = [u0.clone().requires_grad_(), I0.clone().requires_grad_()]
        b = [u0.clone().requires_grad_(), I0.clone().requires_grad_()]
        got = hetcomp_losses(a[0], a[1], torch.nonzero(observed, as_tuple=True), pos, target,
                             chunk=chunk)[which]
        want = _hetcomp_reference(b[0], b[1], observed, pos, target)[which]
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
        (got * torch.arange(1.0, B + 1, dtype=got.dtype)).sum().backward()
        (want * torch.arange(1.0, B + 1, dtype=want.dtype)).sum().backward()
        for x, y in zip(a, b):
            torch.testing.assert_close(x.grad, y.grad, rtol=1e-9, atol=1e-9)


def test_hetcomp_overall_loss_has_the_reference_factor_two():
    h, s, U, I, batch = _hetcomp_case()
    rest = _lse([s[3], s[4], s[5]])  # unobserved, not in the target
    overall = -sum(x - math.log(math.exp(x) + math.exp(rest)) for x in (s[0], s[1], s[2]))
    assert h.kd_loss(U, I, batch).item() == pytest.approx(2 * overall, rel=1e-5)
    h.cfg.overall_factor = 1.0
    assert h.kd_loss(U, I, batch).item() == pytest.approx(overall, rel=1e-5)


def test_hetcomp_listwise_positives_exclude_only_the_top_half():
    h, s, U, I, batch = _hetcomp_case()
    h._aux["curriculum"].idx.fill_(1)  # last checkpoint: listwise
    rest_half = [s[2], s[3], s[4], s[5]]  # unobserved minus the target's first K/2 = {1}
    pos = -(s[0] - _lse([s[0], *rest_half]))
    top = -(s[1] - _lse([s[1], *rest_half]))  # K/2 and K/10 lists are both [1] here
    assert h.kd_loss(U, I, batch).item() == pytest.approx(pos + 0.5 * (top + top), rel=1e-5)


def test_hetcomp_positives_are_the_first_train_items_fixed():
    from kdrec.distill.topk.hetcomp import first_positives

    # CSR: user 0 -> [3, 5, 7], user 1 -> [2, 4], user 2 -> [9]
    indptr, items = torch.tensor([0, 3, 5, 6]), torch.tensor([3, 5, 7, 2, 4, 9])
    assert first_positives(indptr, items, 2).tolist() == [[3, 5], [2, 4], [9, 9]]
    from kdrec.distill.topk.hetcomp import HetComp

    c = HetComp.Config()
    assert c.num_pos == 0  # 0: the smallest train degree
    assert not hasattr(c, "resample_pos") and not hasattr(c, "pos_rest")  # measured, not better: removed


def test_htd_keeps_only_same_group_pairs_with_positive_teacher_cosine():
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.2]])  # cos(0,1) > 0, cos(0,2) < 0, cos(1,2) < 0
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # cos(0,1) = 0, cos(0,2) = 1, cos(1,2) = 0
    group = torch.tensor([0, 0, 0])  # one group: the group level is 0
    ct01 = 1 / math.sqrt(2)
    ref = 2 * (0 - ct01) ** 2  # pair (0,1) both orders; diagonal terms are 0
    assert hierarchical_topology_loss(s, t, group, 1).item() == pytest.approx(ref, rel=1e-5)


def test_rd_and_cd_sum_over_every_triple_user():
    from types import SimpleNamespace

    from kdrec.distill.topk.cd import CD
    from kdrec.distill.topk.rd import RD

    batch = SimpleNamespace(users=torch.tensor([0, 0, 1]))  # user 0 in two triples
    U = torch.tensor([[1.0], [-0.5]])
    I = torch.tensor([[0.3], [2.0], [-1.0]])
    rd = RD(RD.Config(K=1))
    rd.top, rd.static, rd.dyn_items = torch.tensor([[1], [2]]), torch.tensor([[1.0]]), None
    rd.ctx = SimpleNamespace(task=SimpleNamespace(num_items=3))
    ls = lambda x: math.log(1 / (1 + math.exp(-x)))  # noqa: E731
    per_user = [-ls(1.0 * 2.0), -ls(-0.5 * -1.0)]
    assert rd.kd_loss(U, I, batch).item() == pytest.approx(2 * per_user[0] + per_user[1], rel=1e-6)

    cd = CD(CD.Config(n_distill=1))
    cd.samples = torch.tensor([[0], [2]])
    cd.t_samples = ((U * 2)[:, None, :] * I[cd.samples]).sum(-1)
    one = [cd_loss(torch.tensor([[1.0 * 0.3]]), torch.tensor([[2.0 * 0.3]]), 1.0, 0.0).item(),
           cd_loss(torch.tensor([[-0.5 * -1.0]]), torch.tensor([[-1.0 * -1.0]]), 1.0, 0.0).item()]
    assert cd.kd_loss(U, I, batch).item() == pytest.approx(2 * one[0] + one[1], rel=1e-6)
    cd.cfg.users = "unique"  # kdrec's variant, measured better on MovieLens-100K: each batch user once
    assert cd.kd_loss(U, I, batch).item() == pytest.approx(sum(one), rel=1e-6)


def test_cd_tournament_winner_distribution_by_hand_and_drawn_once():
    from kdrec.distill.topk.cd import CD, tournament_ranks

    pool, T = 3, 1.0
    w = [math.exp(-r / (pool * T)) for r in (1, 2, 3)]
    p = [x / sum(w) for x in w]
    # the winner of one round is the better of two independent draws: P(r) = p_r^2 + 2 p_r P(> r)
    want = [p[0] ** 2 + 2 * p[0] * (p[1] + p[2]), p[1] ** 2 + 2 * p[1] * p[2], p[2] ** 2]
    n = 40000
    got = torch.bincount(tournament_ranks(n, pool, 1, T, torch.Generator().manual_seed(0))[:, 0], minlength=3)
    assert torch.allclose(got.double() / n, torch.tensor(want, dtype=torch.float64), atol=0.01)
    full = tournament_ranks(50, pool, 3, T, torch.Generator().manual_seed(1))  # n = pool: every rank once
    assert torch.equal(full.sort(1).values, torch.arange(3).expand(50, 3))
    cd = CD(CD.Config())
    cd.samples = torch.tensor([[4, 5]])
    cd.on_epoch_start(3)  # tournament samples are drawn once, in setup
    assert cd.samples.tolist() == [[4, 5]]
    assert not hasattr(cd.cfg, "sampling")  # the per-epoch redraw, measured not better: removed


def test_ftd_gram_form_matches_the_pairwise_matrices():
    from kdrec.distill.topk.td import cosine_matrix

    torch.manual_seed(4)
    s = torch.randn(40, 3, requires_grad=True)
    t = torch.randn(40, 7)
    ref = (cosine_matrix(s) - cosine_matrix(t)).pow(2).sum()
    got = full_topology_loss(s, t)
    assert got.item() == pytest.approx(ref.item(), rel=1e-4)
    g_ref, = torch.autograd.grad(ref, s)
    g_got, = torch.autograd.grad(got, s)
    assert torch.allclose(g_got, g_ref, atol=1e-4)


def test_htd_grouped_entity_level_matches_the_masked_matrices():
    from kdrec.distill.topk.td import cosine_matrix, within_group_topology

    torch.manual_seed(5)
    n, G = 60, 12
    s = torch.randn(n, 3, requires_grad=True)
    t = torch.randn(n, 5)
    for group in (torch.randint(G, (n,)), torch.cat([torch.zeros(50, dtype=torch.long), torch.arange(10)])):
        same = (group[:, None] == group[None, :]).float()  # second case: one big group, many lone ones
        ct = cosine_matrix(t)
        mask = same * (ct > 0).float()
        ref = ((cosine_matrix(s) - ct).pow(2) * mask).sum()
        got = within_group_topology(s, t, group, G)
        assert got.item() == pytest.approx(ref.item(), rel=1e-5)
        g_ref, = torch.autograd.grad(ref, s)
        g_got, = torch.autograd.grad(got, s)
        assert torch.allclose(g_got, g_ref, atol=1e-5)
    # only lone entities: no pair, a zero loss and a zero gradient
    got = within_group_topology(s, t, torch.arange(n), n)
    assert got.item() == 0.0
    assert not torch.autograd.grad(got, s)[0].any()
    # the hand-written backward against finite differences
    s64 = s.detach()[:20].double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: within_group_topology(x, t[:20].double(), group[:20], G), (s64,))


def test_rd_dynamic_ranks_same_by_full_scores_or_sample_gather(monkeypatch):
    """RD scores its dynamic samples by one product over all items or by gathering the samples'
    embeddings, whichever is cheaper for the item count: the loss is the same either way."""
    from types import SimpleNamespace

    from kdrec.distill.topk import rd as rd_mod

    torch.manual_seed(3)
    U, I = torch.randn(5, 4), torch.randn(300, 4)
    r = rd_mod.RD(rd_mod.RD.Config(K=3))
    r.top = torch.randint(300, (5, 3))
    r.static = torch.softmax(-torch.arange(1.0, 4.0), 0)[None, :]
    r.dyn_items = torch.randint(300, (5, 10))
    r.ctx = SimpleNamespace(task=SimpleNamespace(num_items=300))
    batch = SimpleNamespace(users=torch.tensor([0, 1, 1, 3, 4]))
    monkeypatch.setattr(rd_mod, "FULL_SCORES_MAX_RATIO", 10**9)  # full product
    full = r.kd_loss(U, I, batch)
    monkeypatch.setattr(rd_mod, "FULL_SCORES_MAX_RATIO", 0)  # sample gather
    gathered = r.kd_loss(U, I, batch)
    assert gathered.item() == pytest.approx(full.item(), rel=1e-6)


def test_hetcomp_teacher_train_block_overrides_teacher_train(monkeypatch):
    """A teacher spec's own ``train:`` block (Gowalla: MF and LightGCN need different recipes) is
    merged over ``teacher_train`` for that teacher only, not dropped."""
    from types import SimpleNamespace

    import kdrec.train.loop as loop
    from kdrec.data.interactions import TopKFeatureMap
    from kdrec.distill.topk.hetcomp import HetComp

    seen = []

    class Stop(Exception):
        pass

    def fake_fit(phase, task, cfg, **kw):
        seen.append(cfg)
        raise Stop

    monkeypatch.setattr(loop, "fit", fake_fit)
    fm = TopKFeatureMap("t", 3, 4, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
    h = HetComp(HetComp.Config(teacher_train={"epochs": 7, "lr": 5e-3}))
    h.ctx = SimpleNamespace(task=SimpleNamespace(feature_map=fm, device=torch.device("cpu")))
    for spec in ({"name": "mf", "embed_dim": 4, "train": {"lr": 1e-3, "batch_size": 64}}, {"name": "mf", "embed_dim": 4}):
        with pytest.raises(Stop):
            h._train_teacher(spec, None, 0)
    assert (seen[0].epochs, seen[0].lr, seen[0].batch_size) == (7, 1e-3, 64)
    assert (seen[1].epochs, seen[1].lr) == (7, 5e-3)


def test_hand_written_backwards_run_in_float32_under_bf16_autocast():
    """`trainer.precision=bf16` autocasts the whole step: HTD's and HetComp's custom autograd
    functions compute in float32 inside it (a bf16 product in the forward met a float32 tensor in
    the backward and failed), so they give the float32 loss and gradients."""
    from kdrec.distill.topk.hetcomp import hetcomp_losses
    from kdrec.distill.topk.td import within_group_topology

    g = torch.Generator().manual_seed(5)
    s0, t0 = torch.randn(30, 4, generator=g), torch.randn(30, 8, generator=g)
    group = torch.randint(0, 3, (30,), generator=g)
    u0, I0 = torch.randn(6, 4, generator=g), torch.randn(40, 4, generator=g)
    observed = (torch.tensor([0, 1, 2, 3, 4, 5]), torch.tensor([0, 1, 2, 3, 4, 5]))
    pos = torch.arange(6)[:, None]
    target = torch.stack([torch.randperm(34, generator=g)[:10] + 6 for _ in range(6)])

    def run(autocast: bool):
        s, u, I = s0.clone().requires_grad_(), u0.clone().requires_grad_(), I0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = within_group_topology(s, t0, group, 3) + sum(
                x.sum() for x in hetcomp_losses(u, I, observed, pos, target))
        loss.backward()
        return loss.detach(), s.grad, u.grad, I.grad

    for want, got in zip(run(False), run(True)):
        torch.testing.assert_close(got.float(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(7,), (5, 3), (2, 4, 3)])
def test_gather_rows_is_indexing_with_the_same_gradient(shape):
    torch.manual_seed(0)
    table = torch.randn(11, 6, requires_grad=True)
    ids = torch.randint(11, shape)  # repeats: the gradient sums several rows into one
    weight = torch.randn(*shape, 6)
    out = gather_rows(table, ids)
    assert out.shape == (*shape, 6) and torch.equal(out, table[ids])
    grad, = torch.autograd.grad((out * weight).sum(), table)
    ref, = torch.autograd.grad((table[ids] * weight).sum(), table)
    assert torch.equal(grad, ref)
    assert torch.equal(gather_rows(torch.arange(40).view(10, 4), torch.tensor([[3], [0]])),
                       torch.tensor([[[12, 13, 14, 15]], [[0, 1, 2, 3]]]))
