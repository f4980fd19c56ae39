"""Field-BM25 retrieval: exact scores (hand-computed IDF, textbook Lucene formula, bm25s), the
candidate path equals the dense path, no self-retrieval, time restriction, the task's cache."""

import math

import pytest
import torch

from kdrec.data.spec import CTRDataset, CTRSplit, FeatureMap, FieldInfo
from kdrec.errors import ConfigError
from kdrec.retrieval.bm25 import FieldBM25, RetrievalConfig, RetrievalStats, naive_bm25_scores


def _index(pool, vocab, **kw):
    names = [f"f{i}" for i in range(pool.shape[1])]
    return FieldBM25(pool, vocab, names, RetrievalConfig(**kw))


def test_scores_match_hand_computed_idf():
    # 4 pool rows, 2 fields; query (a=2, b=5)
    pool = torch.tensor([[2, 5], [2, 6], [3, 5], [3, 7]])
    idx = _index(pool, [4, 8], k=4, k1=1.2)
    s = idx.scores(torch.tensor([[2, 5]]))[0]
    idf2 = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))  # a=2 in 2 of 4 docs
    idf5 = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))  # b=5 in 2 of 4 docs
    expect = torch.tensor([idf2 + idf5, idf2, idf5, 0.0]) / 2.2
    assert torch.allclose(s, expect.float(), atol=1e-6)
    # a rarer value weighs more: b=6 occurs once
    s6 = idx.scores(torch.tensor([[3, 6]]))[0]
    assert s6[1] == pytest.approx(math.log(1 + 3.5 / 1.5) / 2.2, abs=1e-6)


def test_scores_equal_textbook_lucene_bm25_with_tf_and_length_terms():
    g = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 5, (40, 4), generator=g)
    q = torch.randint(0, 5, (6, 4), generator=g)
    for fields in ([0, 1, 2, 3], [1, 3]):
        idx = _index(pool, [5] * 4, query_fields=[f"f{i}" for i in fields])
        ref = naive_bm25_scores(q, pool, fields, k1=1.2, b=0.75)
        assert torch.allclose(idx.scores(q).double(), ref, atol=1e-5)


def test_ranking_agrees_with_bm25s_lucene():
    bm25s = pytest.importorskip("bm25s", reason="bm25s (dev dependency) not installed")
    g = torch.Generator().manual_seed(1)
    pool = torch.randint(0, 12, (300, 5), generator=g) ** 2 % 12  # skewed values
    q = torch.randint(0, 12, (20, 5), generator=g)
    corpus = [[f"f{j}={int(v)}" for j, v in enumerate(row)] for row in pool]
    ref = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    ref.index(corpus, show_progress=False)
    idx = _index(pool, [12] * 5, k=10)
    ids, sc = idx.search(q)
    for i, row in enumerate(q):
        theirs = torch.tensor(ref.get_scores([f"f{j}={int(v)}" for j, v in enumerate(row)]))
        ours = idx.scores(row[None])[0].double()
        assert torch.allclose(ours, theirs.double(), rtol=1e-5, atol=1e-6)
        # our top-10 are rows with bm25s's top-10 scores (ties may swap rows of equal score)
        top = torch.sort(theirs, descending=True).values[:10]
        assert torch.allclose(theirs[ids[i]].double(), top.double(), rtol=1e-5)


@pytest.mark.parametrize("time_restricted,pattern", [(False, True), (True, True), (False, False)])
def test_candidate_path_equals_dense_path_and_naive_topk(time_restricted, pattern):
    g = torch.Generator().manual_seed(2)
    n, f = 240, 5
    # fields 0 and 1 are rare (many values), the rest common
    pool = torch.stack([torch.randint(0, 80, (n,), generator=g), torch.randint(0, 60, (n,), generator=g),
                        torch.randint(0, 3, (n,), generator=g), torch.randint(0, 4, (n,), generator=g),
                        torch.randint(0, 2, (n,), generator=g)], 1)
    vocab = [80, 60, 3, 4, 2]
    t = torch.randperm(n, generator=g).float() if time_restricted else None
    excl = torch.arange(n)
    kw = dict(k=7, candidate_max_posting=12, pair_budget=300)
    fast = FieldBM25(pool, vocab, [f"f{i}" for i in range(f)], RetrievalConfig(**kw), pool_time=t)
    assert fast.cand == [0, 1]
    if not pattern:  # the weighted-sum scoring used when a query has more than 12 fields
        fast.pattern = None
    dense = FieldBM25(pool, vocab, [f"f{i}" for i in range(f)],
                      RetrievalConfig(k=7, candidate_fields=[]), pool_time=t)
    assert dense.cand == []
    st = RetrievalStats()
    i1, s1 = fast.search(pool, exclude=excl, query_time=t, stats=st)
    i2, s2 = dense.search(pool, exclude=excl, query_time=t)
    assert st.candidate_pairs > 0 and st.dense_queries < n  # most queries certified
    assert torch.equal(torch.isfinite(s1), torch.isfinite(s2))
    assert torch.allclose(s1[torch.isfinite(s1)], s2[torch.isfinite(s2)], atol=1e-5)
    # naive reference: full score matrix, self and (optionally) later rows masked, zero-score dropped
    ref = naive_bm25_scores(pool, pool, list(range(f))).float()
    ref.fill_diagonal_(float("-inf"))
    if time_restricted:
        ref[t[None, :] >= t[:, None]] = float("-inf")
    ref[ref <= 0] = float("-inf")
    top = ref.topk(7, dim=1).values
    assert torch.allclose(s1.nan_to_num(neginf=-1), top.nan_to_num(neginf=-1), atol=1e-5)
    # ids agree with their scores; no self, no later rows, -1 exactly where no match
    ok = i1 >= 0
    assert torch.equal(ok, torch.isfinite(s1))
    assert not (i1 == excl[:, None]).any()
    if time_restricted:
        assert (t[i1.clamp_min(0)] < t[:, None])[ok].all()
    got = torch.where(ok, ref.gather(1, i1.clamp_min(0)), torch.full_like(s1, -1))
    assert torch.allclose(got, s1.nan_to_num(neginf=-1), atol=1e-5)


def test_no_self_retrieval_but_duplicates_are_found():
    pool = torch.tensor([[1, 1], [1, 1], [2, 3], [4, 5]])
    idx = _index(pool, [6, 6], k=2)
    ids, sc = idx.search(pool, exclude=torch.arange(4))
    assert ids[0, 0] == 1 and ids[1, 0] == 0  # each finds its twin, never itself
    assert (ids[2:] == -1).all() and torch.isinf(sc[2:]).all()  # nothing else shares a value


def test_unknown_field_is_a_config_error():
    with pytest.raises(ConfigError, match="nope"):
        _index(torch.zeros(3, 2, dtype=torch.long), [2, 2], query_fields=["nope"])


def _tiny_dataset(n=300, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 20, (n, 3), generator=g)
    y = torch.randint(0, 2, (n,), generator=g).float()
    fm = FeatureMap("tiny", [FieldInfo(f"f{i}", 20) for i in range(3)])
    cut = {"train": (0, 200), "valid": (200, 250), "test": (250, 300)}
    return CTRDataset(fm, {k: CTRSplit(x[a:b], y[a:b]) for k, (a, b) in cut.items()}, signature="tiny")


def test_store_caches_and_serves_neighbours(tmp_path):
    from kdrec.tasks.ctr import CTRTask

    task = CTRTask(_tiny_dataset(), torch.device("cpu"), 64)
    task.retrieval.cache_dir = tmp_path
    cfg = RetrievalConfig(k=4)
    ids, _ = task.retrieval.result(cfg, "train")
    assert ids.shape == (200, 4) and not (ids == torch.arange(200)[:, None]).any()
    files = list(tmp_path.rglob("train.pt"))
    assert len(files) == 1 and list(tmp_path.rglob("train_stats.json"))
    # a fresh store reads the cache instead of searching again
    task2 = CTRTask(_tiny_dataset(), torch.device("cpu"), 64)
    task2.retrieval.cache_dir = tmp_path
    task2.retrieval.search_split = None  # would fail if called
    assert torch.equal(task2.retrieval.result(cfg, "train")[0], ids)
    x, nx, ny = task.retrieval.neighbours(cfg, "valid", torch.tensor([0, 5]),
                                          task.splits["valid"].x[[0, 5]])
    vid, _ = task.retrieval.result(cfg, "valid")
    assert nx.shape == (2, 4, 3) and ny.shape == (2, 4)
    ok = vid[[0, 5]] >= 0
    assert torch.equal(nx[ok], task.splits["train"].x[vid[[0, 5]][ok]])
    assert (ny[~ok] == -1).all() and torch.equal(ny[ok], task.splits["train"].y[vid[[0, 5]][ok]])


def test_time_restriction_without_timestamps_names_the_problem():
    from kdrec.tasks.ctr import CTRTask

    task = CTRTask(_tiny_dataset(), torch.device("cpu"), 64)
    with pytest.raises(ConfigError, match="timestamps"):
        task.retrieval.result(RetrievalConfig(time_restricted=True), "train")


def test_time_restricted_store_on_timestamped_data(tmp_path):
    """A dataset with split.t (the MovieLens source carries each rating's timestamp): every
    neighbour is strictly earlier than its query, in train and in test."""
    from kdrec.tasks.ctr import CTRTask

    data = _tiny_dataset()
    g = torch.Generator().manual_seed(5)
    for name, split in data.splits.items():
        split.t = torch.randint(0, 1000, (len(split),), generator=g)
    task = CTRTask(data, torch.device("cpu"), 64)
    task.retrieval.cache_dir = tmp_path
    cfg = RetrievalConfig(k=5, time_restricted=True)
    pool_t = data.splits["train"].t
    for split in ("train", "test"):
        ids, _ = task.retrieval.result(cfg, split)
        ok = ids >= 0
        qt = data.splits[split].t[:, None].expand_as(ids)
        assert ok.any() and (pool_t[ids[ok]] < qt[ok]).all()
        # a query with no earlier pool row gets no neighbour at all
        first = int(torch.argmin(data.splits[split].t))
        if not (pool_t < data.splits[split].t[first]).any():
            assert (ids[first] == -1).all()
    # served online (benchmarks, LiveRetrieval), a query comes after the whole pool
    from kdrec.retrieval.store import serve_search

    q = data.splits["test"].x[:20]
    _, s_served = serve_search(task.retrieval, cfg, q)
    _, s_all = task.retrieval.index(RetrievalConfig(k=5)).search(q)
    assert torch.allclose(s_served, s_all)


def test_movielens_carries_timestamps(compose_cfg, tmp_path):
    from conftest import require_data
    from kdrec.runtime import load_data

    require_data("ml-100k", "u.data")
    cfg = compose_cfg("dataset=movielens_100k", f"paths.root={tmp_path}")
    data = load_data(cfg)
    t = data.splits["train"].t
    assert t is not None and t.dtype == torch.int64 and len(t) == len(data.splits["train"])
    assert 874_000_000 < int(t.min()) and int(t.max()) < 894_000_000  # Sep 1997 - Apr 1998


def test_search_inside_bf16_autocast_is_fp32_and_unchanged():
    g = torch.Generator().manual_seed(3)
    pool = torch.randint(0, 6, (300, 4), generator=g)
    index = FieldBM25(pool, [6] * 4, [f"f{i}" for i in range(4)], RetrievalConfig(k=5))
    ids, s = index.search(pool[:50])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as a lazy call from a bf16 training step
        ids2, s2 = index.search(pool[:50])
    assert s2.dtype == torch.float32 and torch.equal(s, s2) and torch.equal(ids, ids2)
