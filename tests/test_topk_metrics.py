"""Full-ranking metrics against a brute-force reference and a hand-computed case."""

import math

import pytest
import torch

from kdrec.eval.ranking import CSR, SMALL_BATCH, ranking_metrics, topn


def brute(U, I, truth, exclude, ks):
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hit")}
    n = 0
    for u in range(U.shape[0]):
        gt = truth.get(u, set())
        if not gt:
            continue
        n += 1
        scores = [(float(U[u] @ I[i]), i) for i in range(I.shape[0]) if i not in exclude.get(u, set())]
        ranked = [i for _, i in sorted(scores, key=lambda x: -x[0])]
        for k in ks:
            top = ranked[:k]
            hits = [1.0 if i in gt else 0.0 for i in top]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(gt), k)))
            sums[f"recall@{k}"] += sum(hits) / len(gt)
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"hit@{k}"] += float(sum(hits) > 0)
    return {k: v / n for k, v in sums.items()}


def to_csr(d, n_users):
    pairs = [(u, i) for u, s in d.items() for i in sorted(s)]
    u = torch.tensor([p[0] for p in pairs], dtype=torch.long)
    i = torch.tensor([p[1] for p in pairs], dtype=torch.long)
    return CSR(u, i, n_users)


@pytest.mark.parametrize("chunk", [1, 3, 4, 100, None])
def test_ranking_metrics_match_brute_force(chunk):
    g = torch.Generator().manual_seed(0)
    n_users, n_items = 9, 30
    U, I = torch.randn(n_users, 4, generator=g), torch.randn(n_items, 4, generator=g)
    train, test = {}, {}
    for u in range(n_users):
        perm = torch.randperm(n_items, generator=g).tolist()
        train[u] = set(perm[:5])
        test[u] = set(perm[5:5 + (u % 4)])  # users 0, 4, 8 have no test items
    ks = [1, 5, 10]
    got = ranking_metrics(U, I, to_csr(test, n_users), [to_csr(train, n_users)], ks, chunk=chunk)
    want = brute(U, I, test, train, ks)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-9), k


def test_hand_computed_case():
    # one user, items scored 5 > 4 > 3 > 2 > 1 (item id = 4 - rank); item 4 (score 5) is train
    U = torch.tensor([[1.0]])
    I = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])
    train = CSR(torch.tensor([0]), torch.tensor([4]), 1)
    test = CSR(torch.tensor([0, 0]), torch.tensor([1, 2]), 1)  # ranks 3 and 2 after excluding item 4
    m = ranking_metrics(U, I, test, [train], [1, 2, 3])
    assert m["recall@1"] == 0 and m["hit@1"] == 0
    assert m["recall@2"] == pytest.approx(0.5)
    dcg2 = 1 / math.log2(3)
    assert m["ndcg@2"] == pytest.approx(dcg2 / (1 + 1 / math.log2(3)))
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert m["hit@2"] == 1.0


def test_csr_of_users_gives_each_users_items_by_position():
    # user 0: items 3, 7; user 1: none; user 2: item 1; user 3: items 0, 2, 5
    csr = CSR(torch.tensor([3, 0, 2, 3, 0, 3]), torch.tensor([5, 7, 1, 0, 3, 2]), 4)
    pos, items = csr.of_users(torch.tensor([3, 1, 0]))
    assert pos.tolist() == [0, 0, 0, 2, 2] and items.tolist() == [0, 2, 5, 3, 7]
    pos, items = csr.of_users(torch.tensor([1]))
    assert pos.numel() == 0 and items.numel() == 0


def test_topn_excludes_train_and_orders():
    U = torch.tensor([[1.0], [-1.0]])
    I = torch.arange(6, dtype=torch.float32)[:, None]
    train = CSR(torch.tensor([0, 1]), torch.tensor([5, 0]), 2)
    top = topn(U, I, 3, [train], chunk=1)
    assert top.tolist() == [[4, 3, 2], [1, 2, 3]]


# a multiple of the block and not (padding); one users-major product for 1 or SMALL_BATCH users,
# one items-major chunk for SMALL_BATCH + 1, chunks of 64 users and a last one of 22 for 150
@pytest.mark.parametrize("n_items", [5000, 5030])
@pytest.mark.parametrize("n_users", [1, SMALL_BATCH, SMALL_BATCH + 1, 150])
def test_block_preselected_topn_equals_plain_topk(n_items, n_users):
    from kdrec.eval.ranking import BLOCK, CSR, topn

    torch.manual_seed(7)
    k = 20
    U, I = torch.randn(n_users, 8), torch.randn(n_items, 8)
    assert -(-n_items // BLOCK) > 2 * k  # the pre-selection path
    users = torch.randint(n_users, (3000,))
    items = torch.randint(n_items, (3000,))
    ex = CSR(users, items, n_users)
    S = U @ I.T
    S[users, items] = float("-inf")
    want_val, want_idx = torch.topk(S, k, dim=1)
    idx, val = topn(U, I, k, [ex], chunk=64, return_scores=True)
    assert torch.equal(idx, want_idx)
    assert torch.allclose(val, want_val)


def test_ranker_serves_the_evaluation_top_k():
    from kdrec.eval.ranking import TopKRanker, topn

    torch.manual_seed(3)
    U, I = torch.randn(300, 6), torch.randn(9000, 6)
    rk = TopKRanker(U, I, k=20)
    for users in (torch.tensor([5]), torch.arange(3), torch.arange(300)):
        want = torch.topk(U[users] @ I.T, 20, dim=1).indices
        assert torch.equal(rk(users), want)
        assert torch.equal(topn(U[users], I, 20, []), want)
