"""Full-ranking top-K metrics, exact and chunked over users.

For every user with at least one ground-truth item, all items are scored, the user's *known*
items (train, and valid when scoring test) are excluded, and the top ``max(ks)`` are compared with
the ground truth. Conventions (LightGCN / BARS):

* ``recall@K = hits@K / |gt|``
* ``ndcg@K = DCG@K / IDCG@K`` with binary gains, ``DCG = sum_r hit_r / log2(r + 1)`` (r from 1),
  ``IDCG`` = the DCG of ``min(|gt|, K)`` hits at the top;
* ``hit@K = 1`` if any hit in the top K.

Averages are over users with ground truth. Memory is bounded by ``chunk x num_items`` scores.

Speed (issue 12 item 5): the scores of a chunk are written into one buffer reused for every chunk
(a fresh ``chunk x num_items`` tensor per chunk costs page faults on every call) in the layout MKL
fills fastest (:func:`score_chunks`), the top items of
every user land in one preallocated ``[users, k]`` tensor, and the metrics are computed once from
it, with hits found by a binary search among the sorted ground-truth keys (no dense
``chunk x num_items`` ground-truth mask, no per-chunk metric arithmetic); ``torch.topk`` runs
only over the items of the ``k`` blocks of 64 items with the largest maxima (:func:`topn`).
"""

from __future__ import annotations

import torch

class CSR:
    """Rows grouped by user: ``items[indptr[u]:indptr[u+1]]`` are user ``u``'s items."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, num_users: int):
        order = torch.argsort(users * (int(items.max()) + 1 if items.numel() else 1) + items)
        self.users, self.items = users[order], items[order]
        counts = torch.bincount(self.users, minlength=num_users)
        self.counts = counts
        self.indptr = torch.zeros(num_users + 1, dtype=torch.long, device=users.device)
        self.indptr[1:] = torch.cumsum(counts, 0)
        self.num_users = num_users
        self.ptr = self.indptr.tolist()  # host copy: chunk boundaries without device syncs
        self.nonempty = int((counts > 0).sum())

    def rows(self, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(row offsets relative to ``a``, items) of users ``a..b-1``."""
        lo, hi = self.ptr[a], self.ptr[b]
        return self.users[lo:hi] - a, self.items[lo:hi]

    def of_users(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(position in ``users``, item) of every item of the given users, in CSR order: reads
        only their rows (a batch's users' train pairs without a pass over all interactions)."""
        start, counts = self.indptr[users], self.counts[users]
        total = int(counts.sum())  # one host sync: the output size
        pos = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), counts, output_size=total)
        first = torch.cumsum(counts, 0) - counts  # each user's first slot in the output
        return pos, self.items[start[pos] + torch.arange(total, device=users.device) - first[pos]]


def _mask_rows(scores: torch.Tensor, csrs: list[CSR], a: int, b: int) -> None:
    for c in csrs:
        r, i = c.rows(a, b)
        scores[r, i] = float("-inf")


def default_chunk(device: torch.device) -> int:
    """Users per chunk: 64 on CPU (see :func:`score_chunks`), 2048 on a GPU."""
    return 64 if torch.device(device).type == "cpu" else 2048


BLOCK = 64  # items per block of the top-k pre-selection (see :func:`topn`)


SMALL_BATCH = 8  # up to this many users, one users-major product (see :func:`topn`)


def items_by_dim(I: torch.Tensor) -> torch.Tensor:
    """The item table as a contiguous ``[d, num_items]`` tensor, the layout a few users' product
    reads (no copy if ``I`` is already the transpose of one): the single-user product with an
    MF-6 table is 6x faster from it (0.022 vs 0.13 ms on Gowalla, 1 thread); for two or more users
    the scores are bit for bit those of the ``[num_items, d]`` layout (checked on this CPU)."""
    return I.T if I.T.is_contiguous() else I.T.contiguous()


def score_chunks(U: torch.Tensor, I: torch.Tensor, chunk: int | None = None, pad_to: int = 1):
    """Yield ``(a, b, scores)`` over user chunks, ``scores[r, i] = U[a + r] . I[i]``.

    The scores are a ``[b - a, num_items]`` *view* of one ``[num_items, chunk]`` buffer that every
    chunk overwrites (use them before asking for the next chunk): MKL computes ``I @ U_chunk^T``
    into that items-major layout about twice as fast as ``U_chunk @ I^T`` into a users-major one
    (Gowalla, 2 threads), and with 64 users per chunk the buffer stays in cache for the top-k
    that reads it along the view's strided rows. ``pad_to``: the buffer has a multiple of that
    many item rows, the extra ones at ``-inf`` (``scores`` then has the padded width)."""
    n, m = U.shape[0], I.shape[0]
    chunk = chunk or default_chunk(U.device)
    m_pad = -(-m // pad_to) * pad_to
    buf = torch.empty((m_pad, min(chunk, n)), dtype=torch.result_type(U, I), device=U.device)
    buf[m:] = float("-inf")
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        s = buf[:m, :b - a]
        # I as given: evaluation's [items, d] table (at 2 threads ~10% faster here than reading
        # the transpose of a [d, items] one) or a ranker's transposed table
        torch.mm(I, U[a:b].T, out=s)
        yield a, b, buf[:, :b - a].T


def topn(U: torch.Tensor, I: torch.Tensor, n: int, exclude: list[CSR], chunk: int | None = None,
         return_scores: bool = False, skip=None):
    """Top-``n`` item ids per user (row of ``U``), highest score first, excluding ``exclude``.
    ``skip(a, b) -> bool``: chunks to leave out (their rows stay 0).

    With many items, a pre-selection makes it cheaper than ``torch.topk`` over every item: items
    come in blocks of :data:`BLOCK`; the ``k`` blocks with the largest maxima hold every top-``k``
    item (an item in another block is below those ``k`` maxima, which are ``k`` distinct items), so
    ``torch.topk`` runs over their ``k x BLOCK`` scores only (exact; among tied scores either may
    be returned, as with ``torch.topk``). Up to :data:`SMALL_BATCH` users (a served request) get
    one users-major product and as few operators as possible (:func:`_top_few`); more users go
    through :func:`score_chunks`."""
    U, I = U.detach(), I.detach()  # (cheaper than a no_grad context per served request)
    n_users, m = U.shape[0], I.shape[0]
    k = min(n, m)
    pre = -(-m // BLOCK) > 2 * k
    chunk = chunk or default_chunk(U.device)
    if n_users <= min(SMALL_BATCH, chunk) and (skip is None or not skip(0, n_users)):
        v, i = _top_few(U, items_by_dim(I), k, pre, exclude)
        return (i, v) if return_scores else i
    idx = torch.zeros(n_users, k, dtype=torch.long, device=U.device)
    val = torch.zeros(n_users, k, dtype=torch.result_type(U, I), device=U.device)
    for a, b, s in score_chunks(U, I, chunk, pad_to=BLOCK if pre else 1):
        if skip is not None and skip(a, b):
            continue
        _mask_rows(s, exclude, a, b)
        if pre:
            val[a:b], idx[a:b] = _select(s, k, m)
        else:
            torch.topk(s, k, dim=1, out=(val[a:b], idx[a:b]))
    return (idx, val) if return_scores else idx


def _top_few(U: torch.Tensor, It: torch.Tensor, k: int, pre: bool, exclude: list[CSR]):
    """(values, ids) of the top ``k`` items for a few users: ``U @ It`` users-major (padded to
    whole blocks at ``-inf`` for the pre-selection), the top-k reading contiguous rows."""
    m = It.shape[1]
    if pre and m % BLOCK:
        s = torch.empty((U.shape[0], -(-m // BLOCK) * BLOCK), dtype=torch.result_type(U, It),
                        device=U.device)
        s[:, m:] = float("-inf")
        torch.mm(U, It, out=s[:, :m])
    else:
        s = U @ It
    _mask_rows(s, exclude, 0, U.shape[0])
    return _select(s, k, m) if pre else torch.topk(s, k, dim=1)


def _select(s: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` (values, item ids) of the ``[c, m_pad]`` scores ``s`` (``m`` real items, the
    padding at ``-inf``) through the ``k`` blocks with the largest maxima (see :func:`topn`)."""
    c, blocks = s.shape[0], s.shape[1] // BLOCK
    rows = torch.arange(c, device=s.device)[:, None]
    if s.is_contiguous():  # users-major: [c, blocks, BLOCK]
        by_block = s.view(c, blocks, BLOCK)
        best = torch.topk(by_block.amax(2), k, dim=1).indices  # [c, k] blocks
        cand = by_block[rows, best]  # [c, k, BLOCK]
    else:  # the items-major buffer, no copy: [blocks, BLOCK, c]
        by_block = s.T.reshape(blocks, BLOCK, c)
        best = torch.topk(by_block.amax(1).T, k, dim=1).indices
        cand = by_block[best, :, rows]
    v, j = torch.topk(cand.reshape(c, k * BLOCK), k, dim=1)
    # (a padding id could only win for a user with fewer than k items left: clamp it)
    return v, (best.gather(1, j // BLOCK) * BLOCK + j % BLOCK).clamp_max(m - 1)


def discounts(k: int, device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))


def hits_of(top: torch.Tensor, truth: CSR, num_items: int) -> torch.Tensor:
    """[U, k] bool: is ``top[u, j]`` among user ``u``'s ground-truth items (binary search in the
    sorted ``(user, item)`` keys of ``truth``)."""
    keys = truth.users * num_items + truth.items  # sorted: CSR rows are (user, item)-sorted
    if keys.numel() == 0:
        return torch.zeros_like(top, dtype=torch.bool)
    q = torch.arange(top.shape[0], device=top.device)[:, None] * num_items + top
    pos = torch.searchsorted(keys, q).clamp_max(keys.numel() - 1)
    return keys[pos] == q


@torch.no_grad()
def ranking_metrics(U: torch.Tensor, I: torch.Tensor, truth: CSR, exclude: list[CSR],
                    ks: list[int], chunk: int | None = None) -> dict[str, float]:
    ks = sorted(int(k) for k in ks)
    n_items = I.shape[0]
    kmax = min(max(ks), n_items)
    t_ptr = truth.ptr
    top = topn(U, I, kmax, exclude, chunk, skip=lambda a, b: t_ptr[b] == t_ptr[a])
    hits = hits_of(top, truth, n_items).double()  # [U, kmax]
    n_gt = truth.counts
    has = n_gt > 0
    hits, n_gt = hits[has], n_gt[has]
    disc = discounts(kmax, U.device)
    idcg_table = torch.cumsum(disc, 0)  # idcg for m = 1..kmax hits
    cum_hits = torch.cumsum(hits, 1)
    dcg = torch.cumsum(hits * disc, 1)
    sums = []
    for k in ks:
        kk = min(k, kmax)
        h = cum_hits[:, kk - 1]
        ideal = idcg_table[torch.clamp(n_gt, max=kk) - 1]
        sums += [(h / n_gt).sum(), (dcg[:, kk - 1] / ideal).sum(), (h > 0).double().sum()]
    vals = (torch.stack(sums) / max(truth.nonempty, 1)).cpu().tolist()  # one sync
    out = {}
    for j, k in enumerate(ks):
        out[f"recall@{k}"] = vals[3 * j]
        out[f"ndcg@{k}"] = vals[3 * j + 1]
        out[f"hit@{k}"] = vals[3 * j + 2]
    return out


class TopKRanker(torch.nn.Module):
    """What a served top-K model runs per request: the final representations, computed once
    (LightGCN: propagated once per set of weights, not per query), every item scored for each
    requested user, the top ``k`` item ids returned (through :func:`topn`, the evaluation path)."""

    def __init__(self, U: torch.Tensor, I: torch.Tensor, k: int = 20):
        super().__init__()
        self.register_buffer("U", U.detach())
        self.register_buffer("It", items_by_dim(I.detach()))  # [d, items], built once
        self.k = k

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return topn(self.U[users], self.It.T, self.k, [])
