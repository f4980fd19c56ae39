"""Top-K data: split helpers, readers, synthetic structure, BPR sampling, LightGCN propagation."""

from pathlib import Path

import pytest
import torch

from kdrec.data.interactions import leave_one_out, random_split, rank_within_user
from kdrec.data.registry import DataPaths, load_dataset
from kdrec.errors import DataError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def test_rank_within_user_and_splits():
    users = torch.tensor([1, 0, 1, 1, 0, 1])
    key = torch.tensor([5.0, 2.0, 1.0, 3.0, 1.0, 9.0])
    pos, count = rank_within_user(users, key)
    assert pos.tolist() == [2, 1, 0, 1, 0, 3] and count.tolist() == [4, 2, 4, 4, 2, 4]
    lab = leave_one_out(users, key)
    assert lab.tolist() == [1, 2, 0, 0, 0, 2]  # user 0 has 2 rows: latest -> test, no valid
    users = torch.arange(50).repeat_interleave(20)
    lab = random_split(users, [0.8, 0.1, 0.1], 0)
    for s, n in ((0, 16), (1, 2), (2, 2)):
        assert torch.bincount(users[lab == s], minlength=50).eq(n).all()
    assert torch.equal(lab, random_split(users, [0.8, 0.1, 0.1], 0))  # seeded
    one = random_split(torch.tensor([0]), [0.8, 0.1, 0.1], 0)
    assert one.tolist() == [0]  # a single interaction stays in train


def test_interactions_csv_and_loo(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("uid,iid,t\nb,x,1\nb,y,2\nb,z,3\na,x,5\na,z,4\na,x,6\n")
    paths = DataPaths(tmp_path, tmp_path / "cache")
    d = load_dataset({"name": "interactions", "path": str(f), "user_col": "uid", "item_col": "iid",
                      "time_col": "t", "split_rule": "loo"}, paths)
    fm = d.feature_map
    assert (fm.num_users, fm.num_items) == (2, 3)
    # user a (id 0): x at t=6 (dedup keeps latest), z at 4 -> test x, train z; user b: test z, valid y
    assert list(zip(d["test"].users.tolist(), d["test"].items.tolist())) == [(0, 0), (1, 2)]
    assert list(zip(d["valid"].users.tolist(), d["valid"].items.tolist())) == [(1, 1)]
    again = load_dataset({"name": "interactions", "path": str(f), "user_col": "uid", "item_col": "iid",
                          "time_col": "t", "split_rule": "loo"}, paths)  # from the parquet cache
    assert torch.equal(again["train"].items, d["train"].items)
    with pytest.raises(DataError, match="nope"):
        load_dataset({"name": "interactions", "path": str(f), "user_col": "nope"}, DataPaths(tmp_path, tmp_path / "c2"))


def test_gowalla_reader_on_a_tiny_file(tmp_path):
    root = tmp_path / "gowalla_m1"
    root.mkdir()
    (root / "train.txt").write_text("0 0 1 2\n1 2 3\n2 4\n")
    (root / "test.txt").write_text("0 3\n1 0 4\n2\n")
    d = load_dataset({"name": "gowalla_m1"}, DataPaths(tmp_path, tmp_path / "cache"))
    assert (d.feature_map.num_users, d.feature_map.num_items) == (3, 5)
    assert len(d["train"]) == 6 and len(d["test"]) == 3 and d.valid_is == "test"
    assert d["valid"] is d["test"]


@pytest.mark.skipif(not (DATA / "ml-100k" / "u.data").is_file(), reason="shared/data/ml-100k absent")
def test_movielens_topk_split(tmp_path):
    d = load_dataset({"name": "movielens_100k_topk", "subdir": "ml-100k"}, DataPaths(DATA, tmp_path))
    assert (d.feature_map.num_users, d.feature_map.num_items) == (943, 1682)
    assert sum(len(d[s]) for s in ("train", "valid", "test")) == 100_000
    assert 0.79 < len(d["train"]) / 100_000 < 0.81


def test_synthetic_has_cluster_structure_and_sampler_avoids_train():
    from kdrec.tasks.topk import TopKTask

    d = load_dataset({"name": "synthetic_topk", "num_users": 200, "num_items": 150}, DataPaths(Path("."), Path(".")))
    task = TopKTask(d, torch.device("cpu"), 256)
    batches = list(task.train_batches(torch.Generator().manual_seed(0)))
    users = torch.cat([b.users for b in batches])
    neg = torch.cat([b.neg for b in batches])
    assert len(users) == task.num_rows("train")
    assert not task.is_train_pair(users, neg).any()
    assert task.is_train_pair(torch.cat([b.users for b in batches]), torch.cat([b.pos for b in batches])).all()


def test_lightgcn_matches_dense_reference():
    from kdrec.data.interactions import TopKFeatureMap
    from kdrec.models.topk.lightgcn import LightGCN, LightGCNConfig

    u, i = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 2])
    fm = TopKFeatureMap("t", 3, 3, u, i)
    m = LightGCN(fm, LightGCNConfig(embed_dim=4, num_layers=2))
    A = torch.zeros(6, 6)
    A[u, i + 3] = 1
    A[i + 3, u] = 1
    d = A.sum(1).pow(-0.5)
    d[torch.isinf(d)] = 0
    An = d[:, None] * A * d[None, :]
    e0 = torch.cat([m.user_emb.weight, m.item_emb.weight])
    want = (e0 + An @ e0 + An @ An @ e0) / 3
    U, I = m.embed()
    assert torch.allclose(torch.cat([U, I]), want, atol=1e-6)
    # the propagation's backward (A @ grad, A symmetric) matches dense autograd
    w = torch.randn(6, 4)
    (torch.cat([U, I]) * w).sum().backward()
    e0d = e0.detach().clone().requires_grad_(True)
    ((e0d + An @ e0d + An @ An @ e0d) / 3 * w).sum().backward()
    got = torch.cat([m.user_emb.weight.grad, m.item_emb.weight.grad])
    assert torch.allclose(got, e0d.grad, atol=1e-6)


def test_propagation_bags_match_the_dense_product_with_an_isolated_node():
    """The CSR rows as embedding bags: an empty row (an item nobody trained on) gives a zero row,
    int32 and int64 indices give the same sums, and the symmetric backward is the dense one."""
    from kdrec.models.topk.lightgcn import Adjacency, SymmetricSpMM, normalized_adjacency

    u, i = torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 1, 1, 0, 2])
    A = normalized_adjacency(u, i, 3, 4)  # item 3 has no interaction
    dense = A.to_dense().double()
    bags = Adjacency.of_csr(A)
    assert bags.cols.dtype == torch.int32
    bags64 = Adjacency(bags.cols.long(), bags.offsets.long(), bags.vals.double())
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    y = SymmetricSpMM.apply(bags64, x)
    assert torch.allclose(y, dense @ x)
    assert (y[6] == 0).all()
    w = torch.randn(7, 5, dtype=torch.float64)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, dense.T @ w)
    assert torch.autograd.gradcheck(lambda t: SymmetricSpMM.apply(bags64, t), (x.detach().requires_grad_(True),))
    x32 = x.detach().float()
    assert torch.equal(bags @ x32, Adjacency(bags.cols.long(), bags.offsets.long(), bags.vals) @ x32)


def test_user_uniform_sampling_draws_train_pairs_with_users_equally_likely():
    from kdrec.tasks.topk import TopKTask

    d = load_dataset({"name": "synthetic_topk", "num_users": 200, "num_items": 150}, DataPaths(Path("."), Path(".")))
    d.sampling = "user"
    task = TopKTask(d, torch.device("cpu"), 4096)
    users, pos = [], []
    for epoch in range(20):
        for b in task.train_batches(torch.Generator().manual_seed(epoch)):
            users.append(b.users)
            pos.append(b.pos)
            assert not task.is_train_pair(b.users, b.neg).any()
    users, pos = torch.cat(users), torch.cat(pos)
    assert len(users) == 20 * task.num_rows("train")
    assert task.is_train_pair(users, pos).all()
    # users uniform (not by degree): per-user counts within a few standard deviations of the mean
    counts = torch.bincount(users, minlength=200).double()
    mean = len(users) / 200
    assert (counts - mean).abs().max() < 5 * mean ** 0.5
    # interaction sampling instead follows the degrees
    deg = torch.bincount(d["train"].users, minlength=200).double()
    assert deg.max() / deg.min() > 2  # so the two samplers really differ on this data
    d.sampling = "bogus"
    with pytest.raises(Exception, match="sampling"):
        TopKTask(d, torch.device("cpu"), 4096)


def test_redraw_rejected_equals_the_plain_rejection_loop():
    """The pending-only rejection gives the very ids (and generator state) of the loop it replaced:
    committed results of every top-K run depend on it."""
    from kdrec.tasks.topk import redraw_rejected

    n_rows, n_ids, per_row = 50, 30, 16
    banned = torch.rand(n_rows, n_ids, generator=torch.Generator().manual_seed(5)) < 0.6

    def bad(rows, ids):
        return banned[rows, ids]

    rows = torch.arange(n_rows)[:, None].expand(n_rows, per_row)
    for rounds in (0, 1, 3, 20):
        g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)

        def draw1():
            return torch.randint(n_ids, (n_rows, per_row), generator=g1)

        ids = draw1()
        for _ in range(rounds):
            ids = torch.where(bad(rows, ids), draw1(), ids)

        def draw2():
            return torch.randint(n_ids, (n_rows, per_row), generator=g2)

        got = redraw_rejected(rows, draw2(), draw2, bad, rounds)
        assert torch.equal(got, ids), rounds
        assert torch.equal(g1.get_state(), g2.get_state())
        if rounds == 20:
            assert not bad(rows, got).any()
        if rounds == 1:
            assert bad(rows, got).any()  # the case is not trivial: one round leaves rejects


def test_several_negatives_per_positive():
    """``negatives: K``: neg [B, K], none a train item of its user, drawn reproducibly, and the
    BPR loss is the mean over the K pairs of each positive (hand-computed below)."""
    from kdrec.tasks.topk import TopKBatch, TopKTask

    d = load_dataset({"name": "synthetic_topk", "num_users": 200, "num_items": 150}, DataPaths(Path("."), Path(".")))
    task = TopKTask(d, torch.device("cpu"), 256)
    batches = list(task.train_batches(torch.Generator().manual_seed(3), 256, 7))
    again = list(task.train_batches(torch.Generator().manual_seed(3), 256, 7))
    assert all(b.neg.shape == (len(b), 7) for b in batches)
    assert all(torch.equal(a.neg, b.neg) for a, b in zip(batches, again))
    for b in batches:
        assert not task.is_train_pair(b.users[:, None].expand_as(b.neg), b.neg).any()
    # the negatives spread over the items (not one draw repeated K times)
    assert torch.cat([b.neg.flatten() for b in batches]).unique().numel() > 100

    U = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    I = torch.tensor([[1.0, 1.0], [0.5, 0.0], [0.0, -1.0]])
    b = TopKBatch(torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([[1, 2], [1, 1]]))
    # user 0: pos 1, negs 0.5 and 0; user 1: pos 2, negs 0 and 0
    ls = torch.nn.functional.logsigmoid
    want = -(ls(torch.tensor(0.5)) + ls(torch.tensor(1.0)) + 2 * ls(torch.tensor(2.0))) / 4
    assert torch.allclose(TopKTask.bpr(U, I, b), want)
    # K = 1 given as [B, 1] is the one-negative loss
    b1 = TopKBatch(b.users, b.pos, b.neg[:, :1])
    assert torch.allclose(TopKTask.bpr(U, I, b1), TopKTask.bpr(U, I, TopKBatch(b.users, b.pos, b.neg[:, 0])))


def test_ctr_task_refuses_several_negatives():
    from kdrec.errors import ConfigError
    from kdrec.tasks.ctr import CTRTask

    with pytest.raises(ConfigError, match="trainer.negatives"):
        next(CTRTask.train_batches(None, torch.Generator(), 8, 4))
