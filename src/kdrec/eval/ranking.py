"""Full-ranking top-K metrics, exact and chunked over users.

For every user with at least one ground-truth item, all items are scored, the user's *known*
items (train, and valid when scoring test) are excluded, and the top ``max(ks)`` are compared with
the ground truth. Conventions (LightGCN / BARS):

* ``recall@K = hits@K / |gt|``
* ``ndcg@K = DCG@K / IDCG@K`` with binary gains, ``DCG = sum_r hit_r / log2(r + 1)`` (r from 1),
  ``IDCG`` = the DCG of ``min(|gt|, K)`` hits at the top;
* ``hit@K = 1`` if any hit in the top K.

Averages are over users with ground truth. Memory is bounded by ``chunk x num_items`` scores.
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


def _mask_rows(scores: torch.Tensor, csrs: list[CSR], a: int, b: int) -> None:
    for c in csrs:
        r, i = c.rows(a, b)
        scores[r, i] = float("-inf")


def score_chunks(U: torch.Tensor, I: torch.Tensor, chunk: int):
    """Yield (a, b, U[a:b] @ I.T) over user chunks."""
    n = U.shape[0]
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        yield a, b, U[a:b] @ I.T


@torch.no_grad()
def topn(U: torch.Tensor, I: torch.Tensor, n: int, exclude: list[CSR], chunk: int = 2048,
         return_scores: bool = False):
    """Top-``n`` item ids per user (row of ``U``), highest score first, excluding ``exclude``."""
    idx, val = [], []
    for a, b, s in score_chunks(U, I, chunk):
        _mask_rows(s, exclude, a, b)
        v, i = torch.topk(s, min(n, s.shape[1]), dim=1)
        idx.append(i)
        val.append(v)
    out = torch.cat(idx)
    return (out, torch.cat(val)) if return_scores else out


def discounts(k: int, device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))


@torch.no_grad()
def ranking_metrics(U: torch.Tensor, I: torch.Tensor, truth: CSR, exclude: list[CSR],
                    ks: list[int], chunk: int = 2048) -> dict[str, float]:
    ks = sorted(int(k) for k in ks)
    kmax = min(max(ks), I.shape[0])
    dev = U.device
    disc = discounts(kmax, dev)
    idcg_table = torch.cumsum(disc, 0)  # idcg for m = 1..kmax hits
    sums = torch.zeros(3 * len(ks), dtype=torch.float64, device=dev)
    t_ptr = truth.ptr
    for a, b, s in score_chunks(U, I, chunk):
        n_gt = truth.counts[a:b]
        if t_ptr[b] == t_ptr[a]:
            continue
        _mask_rows(s, exclude, a, b)
        top = torch.topk(s, kmax, dim=1).indices
        gt = torch.zeros_like(s, dtype=torch.bool)
        r, i = truth.rows(a, b)
        gt[r, i] = True
        hits = gt.gather(1, top).double()  # [c, kmax]
        has = n_gt > 0
        cum_hits = torch.cumsum(hits, 1)
        dcg = torch.cumsum(hits * disc, 1)
        for j, k in enumerate(ks):
            kk = min(k, kmax)
            h = cum_hits[:, kk - 1]
            ideal = idcg_table[(torch.clamp(n_gt, max=kk) - 1).clamp_min(0)]
            sums[3 * j] += (h / n_gt.clamp_min(1))[has].sum()
            sums[3 * j + 1] += (dcg[:, kk - 1] / ideal)[has].sum()
            sums[3 * j + 2] += (h > 0).double()[has].sum()
    n_users = truth.nonempty
    vals = (sums / max(n_users, 1)).cpu().tolist()  # one sync
    out = {}
    for j, k in enumerate(ks):
        out[f"recall@{k}"] = vals[3 * j]
        out[f"ndcg@{k}"] = vals[3 * j + 1]
        out[f"hit@{k}"] = vals[3 * j + 2]
    return out
