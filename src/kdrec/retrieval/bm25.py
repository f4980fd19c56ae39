"""Exact field-BM25 top-K retrieval over a search pool of CTR rows (RIM's Elasticsearch step).

Every row is a document of one token per (field, value). Lucene's BM25 scores a document d for a
query q as ``sum_{t in q} idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))`` with
``idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))``. Here ``tf`` is 1 for every matching token
and every document has the same length (one token per field), so ``|d| = avgdl`` and the score is
exactly ``sum over matching query fields of idf(field, value) / (k1 + 1)`` (``b`` drops out).
Documents that match no query token score 0 and are not returned (as in Elasticsearch): a query
may get fewer than K neighbours, padded with id -1.

Two exact paths, both vectorized and chunked so memory is bounded by the chunk sizes:

* **candidates** (the fast path): rows sharing a value of a *rare* query field (a field whose
  longest posting list is short, e.g. user and item ids) are gathered from posting lists
  (ragged), scored on all query fields (match-pattern code -> per-query table of subset sums)
  and ranked per query with one scatter + ``torch.topk``. Any other row matches none of those
  fields, so its score is at most ``tail(q)``, the summed weight of the query's other fields:
  where the K-th candidate score is >= ``tail(q)`` the candidates' top-K is the exact top-K
  (ties aside). Queries that are not certified move to the next *level*, which adds the next
  rarest query field to the candidate fields (the last level, all query fields, has tail 0 and
  always certifies); a query whose candidate lists would outnumber the pool goes dense.
* **dense** (the fallback, and the whole job when no field is rare): broadcast equality of a
  query chunk against pool chunks, weighted sum over fields, running ``torch.topk``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from kdrec.errors import ConfigError
from kdrec.schema import ge


@dataclass
class RetrievalConfig:
    """Settings of the sample retrieval (a ``retrieval:`` block in a model yaml such as RIM's)."""

    k: int = 10  # neighbours per query
    k1: float = 1.2  # Lucene's k1 (scales scores by 1/(k1+1); no effect on the ranking)
    query_fields: list[str] | None = None  # fields a query uses (None: all fields)
    time_restricted: bool = False  # pool rows must be strictly earlier than the query (needs split.t)
    # speed knobs (the result does not depend on them, ties aside)
    candidate_fields: list[str] | None = None  # None: auto (query fields with short posting lists)
    candidate_max_posting: int = field(default=0, metadata=ge(0))  # auto rule: longest posting <= this (0: 2.5% of the pool, >= 1024)
    pair_budget: int = 100_000  # candidate (query, row) pairs scored per chunk (cache-sized: 2M was 3x slower)
    dense_query_chunk: int = 64
    dense_pool_chunk: int = 32768

    def semantic(self) -> dict:
        """The settings that define the result (what a cache signature needs)."""
        return {"k": self.k, "k1": self.k1, "query_fields": self.query_fields,
                "time_restricted": self.time_restricted}


@dataclass
class RetrievalStats:
    queries: int = 0
    seconds: float = 0.0
    candidate_pairs: int = 0  # (query, row) pairs scored on the candidate path
    dense_queries: int = 0  # queries that fell back to (or were all sent to) the dense path
    dense_pairs: int = 0
    query_fields: int = 0

    def flops_per_query(self) -> float:
        """Explicit count: per scored pair, one compare and one multiply-add per query field."""
        pairs = self.candidate_pairs + self.dense_pairs
        return 3.0 * pairs * self.query_fields / max(self.queries, 1)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["rows_per_second"] = self.queries / self.seconds if self.seconds > 0 else float("nan")
        d["flops_per_query"] = self.flops_per_query()
        return d


def field_indices(names: list[str] | None, all_names: list[str], what: str) -> list[int]:
    if names is None:
        return list(range(len(all_names)))
    bad = [n for n in names if n not in all_names]
    if bad:
        raise ConfigError(f"retrieval.{what}: unknown field(s) {bad}; fields: {all_names}")
    return [all_names.index(n) for n in names]


class FieldBM25:
    """BM25 index over ``pool_x`` [N, F] (local ids per field, ``vocab_sizes`` per field)."""

    def __init__(self, pool_x: torch.Tensor, vocab_sizes: list[int], field_names: list[str],
                 cfg: RetrievalConfig, pool_time: torch.Tensor | None = None):
        if cfg.k < 1:
            raise ConfigError(f"retrieval.k must be >= 1, not {cfg.k}")
        self.cfg = cfg
        dev = pool_x.device
        self.device = dev
        self.pool_x = pool_x.to(torch.int32).contiguous()
        self.n, self.f = pool_x.shape
        self.pool_time = pool_time
        self.offsets = torch.tensor([0, *vocab_sizes[:-1]], device=dev).cumsum(0)
        total = int(sum(vocab_sizes))
        flat = (pool_x + self.offsets).reshape(-1)
        df = torch.bincount(flat, minlength=total).to(torch.float64)
        idf = torch.log1p((self.n - df + 0.5) / (df + 0.5))
        self.weight = (idf / (cfg.k1 + 1.0)).to(torch.float32)  # [sum V] per (field, value)
        self.df = df
        qf = field_indices(cfg.query_fields, field_names, "query_fields")
        self.query_mask = torch.zeros(self.f, dtype=torch.bool, device=dev)
        self.query_mask[qf] = True
        self.qf = qf
        # posting lists of every query field, and the candidate levels: the rare fields first
        # (auto: longest posting <= limit), then one more query field per level, rarest first
        longest = [int(torch.bincount(self.pool_x[:, f].long()).max()) if self.n else 0 for f in qf]
        by_rarity = [f for _, f in sorted(zip(longest, qf))]
        if cfg.candidate_fields is not None:
            cand = field_indices(cfg.candidate_fields, field_names, "candidate_fields")
            if not set(cand) <= set(qf):
                raise ConfigError("retrieval.candidate_fields must be a subset of query_fields")
        else:
            limit = cfg.candidate_max_posting or max(1024, int(0.025 * self.n))
            cand = [f for f, m in zip(qf, longest) if m <= limit]
        self.cand = cand
        self.levels = [cand] if cand else []
        if cand and cfg.candidate_fields is None:
            for f in by_rarity:
                if f not in self.levels[-1]:
                    self.levels.append([*self.levels[-1], f])
        count_flat = torch.zeros(total, dtype=torch.long, device=dev)
        start_flat = torch.zeros(total, dtype=torch.long, device=dev)
        posts = []
        for j, f in enumerate(qf):  # once per query field, at index build time
            col = pool_x[:, f].long()
            counts = torch.bincount(col, minlength=vocab_sizes[f])
            o = int(self.offsets[f])
            count_flat[o:o + vocab_sizes[f]] = counts
            start_flat[o:o + vocab_sizes[f]] = counts.cumsum(0) - counts + j * self.n
            posts.append(torch.argsort(col, stable=True))
        self.count_flat, self.start_flat = count_flat, start_flat
        self.post = torch.cat(posts) if posts else torch.zeros(0, dtype=torch.long, device=dev)
        # query fields of the pool in the smallest integer type that holds them (gathers dominate)
        small = max((vocab_sizes[f] for f in qf), default=0) < 2**15
        self.qf_t = torch.tensor(qf, dtype=torch.long, device=dev)
        self.pool_q = self.pool_x[:, self.qf_t].to(torch.int16 if small else torch.int32).contiguous()
        self.pattern = None
        if 0 < len(qf) <= 12:  # match pattern -> score by table lookup
            nq = len(qf)
            self.pattern = (2 ** torch.arange(nq, device=dev)).to(torch.int32)
            codes = torch.arange(2 ** nq, device=dev)
            self.subsets = ((codes[None, :] >> torch.arange(nq, device=dev)[:, None]) & 1).float()

    # ------------------------------------------------------------------ helpers
    def query_weights(self, xq: torch.Tensor) -> torch.Tensor:
        """[B, F] weight of each query token (0 on fields the query does not use)."""
        return self.weight[xq.long() + self.offsets] * self.query_mask

    def scores(self, xq: torch.Tensor, pool_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Dense BM25 scores [B, P] of queries ``xq`` against pool rows ``pool_idx`` (all if None)."""
        xp = self.pool_x if pool_idx is None else self.pool_x[pool_idx]
        wq = self.query_weights(xq)
        eq = xq.to(torch.int32)[:, None, :] == xp[None, :, :]
        return (eq * wq[:, None, :]).sum(-1)

    def _mask(self, s, rows, q_excl, q_time):
        """-inf where a row is the query itself, not earlier in time, or matches nothing."""
        bad = s <= 0
        if q_excl is not None:
            bad |= rows == q_excl
        if q_time is not None and self.pool_time is not None:
            bad |= self.pool_time[rows] >= q_time
        return s.masked_fill(bad, float("-inf"))

    # ------------------------------------------------------------------ dense path
    def _dense(self, xq, excl, qtime, stats: RetrievalStats):
        K, B = self.cfg.k, xq.shape[0]
        qf = torch.tensor(self.qf, device=self.device)
        ids_out = torch.full((B, K), -1, dtype=torch.long, device=self.device)
        sc_out = torch.full((B, K), float("-inf"), device=self.device)
        pool_q = self.pool_x[:, qf]
        for a in range(0, B, self.cfg.dense_query_chunk):
            xc = xq[a:a + self.cfg.dense_query_chunk]
            wc = self.query_weights(xc)[:, qf]
            xc = xc.to(torch.int32)[:, qf]
            ec = None if excl is None else excl[a:a + xc.shape[0], None]
            tc = None if qtime is None else qtime[a:a + xc.shape[0], None]
            best_s = torch.full((xc.shape[0], 0), float("-inf"), device=self.device)
            best_i = torch.zeros((xc.shape[0], 0), dtype=torch.long, device=self.device)
            for p in range(0, self.n, self.cfg.dense_pool_chunk):
                rows = torch.arange(p, min(p + self.cfg.dense_pool_chunk, self.n), device=self.device)
                s = ((xc[:, None, :] == pool_q[p:p + rows.shape[0]][None]) * wc[:, None, :]).sum(-1)
                s = self._mask(s, rows[None, :], ec, tc)
                best_s = torch.cat([best_s, s], 1)
                best_i = torch.cat([best_i, rows[None, :].expand_as(s)], 1)
                best_s, pos = best_s.topk(min(K, best_s.shape[1]), dim=1)
                best_i = best_i.gather(1, pos)
            kk = best_s.shape[1]
            ok = torch.isfinite(best_s)
            ids_out[a:a + xc.shape[0], :kk] = torch.where(ok, best_i, -1)
            sc_out[a:a + xc.shape[0], :kk] = best_s
        stats.dense_queries += B
        stats.dense_pairs += B * self.n
        return ids_out, sc_out

    # ------------------------------------------------------------------ candidate path
    def _candidates(self, xq, fields: list[int], excl, qtime, stats: RetrievalStats):
        """Exact top-K among rows sharing a rare-field value; returns (ids, scores, certified).

        Pairs are scored ragged (no padding): gather the pool rows' query fields, compare with the
        query, turn the F_q match bits into a pattern code and look the score up in a per-query
        table of 2^F_q subset sums (F_q <= 12; a weighted sum otherwise). Then one scatter into a
        [B, longest candidate list] matrix and ``topk`` (queries arrive sorted by list length)."""
        K, B, H = self.cfg.k, xq.shape[0], len(fields)
        dev = self.device
        cand_t = torch.tensor(fields, dtype=torch.long, device=dev)
        cand_q = torch.tensor([self.qf.index(f) for f in fields], dtype=torch.long, device=dev)
        qh = xq[:, cand_t].long() + self.offsets[cand_t]  # [B, H] flat ids
        seg_len = self.count_flat[qh].reshape(-1)
        seg_st = self.start_flat[qh].reshape(-1)
        per_q = seg_len.view(B, H).sum(1)
        width = int(per_q.max()) if B else 0
        wq = self.query_weights(xq)
        rare = torch.zeros(self.f, dtype=torch.bool, device=dev)
        rare[cand_t] = True
        tail = (wq * ~rare).sum(1)
        ids = torch.full((B, K), -1, dtype=torch.long, device=dev)
        sc = torch.full((B, K), float("-inf"), device=dev)
        if width == 0:
            return ids, sc, tail <= 0
        total = int(per_q.sum())
        seg = torch.repeat_interleave(torch.arange(B * H, device=dev), seg_len, output_size=total)
        pos = torch.arange(total, device=dev) - (seg_len.cumsum(0) - seg_len).index_select(0, seg)
        rows = self.post.index_select(0, seg_st.index_select(0, seg) + pos)
        qi, hj = seg // H, seg % H
        seg_off = (seg_len.view(B, H).cumsum(1) - seg_len.view(B, H)).reshape(-1)
        col = pos + seg_off.index_select(0, seg)  # position in the query's candidate list
        del seg, pos
        # index_select, not advanced indexing: the gathers dominate this path
        eq = self.pool_q.index_select(0, rows) == xq[:, self.qf_t].to(self.pool_q.dtype).index_select(0, qi)
        wqq = wq[:, self.qf_t]
        if self.pattern is not None:
            code = (eq * self.pattern).sum(-1, dtype=torch.int32)  # which query fields match
            table = wqq @ self.subsets  # [B, 2^Fq] score of every match pattern
            s = table.reshape(-1).index_select(0, qi * self.subsets.shape[1] + code)
            # a row matching several candidate fields is kept in the first one's posting only
            bits = (2 ** cand_q).to(torch.int32)  # each candidate field's bit in the code
            earlier = bits.cumsum(0, dtype=torch.int32) - bits  # bits of the fields before it
            dup = (code & earlier.index_select(0, hj)) != 0
        else:
            s = (eq * wqq.index_select(0, qi)).sum(-1)
            dup = (eq[:, cand_q] & (torch.arange(H, device=dev)[None, :] < hj[:, None])).any(1)
        del eq
        bad = dup | (s <= 0)
        if excl is not None:
            bad |= rows == excl.index_select(0, qi)
        if qtime is not None:
            bad |= self.pool_time.index_select(0, rows) >= qtime.index_select(0, qi)
        flat = qi * width + col
        mat = torch.full((B * width,), float("-inf"), device=dev)
        mat.index_copy_(0, flat, s.masked_fill(bad, float("-inf")))
        rmat = torch.empty(B * width, dtype=torch.long, device=dev)
        rmat.index_copy_(0, flat, rows)
        kk = min(K, width)
        top, where = mat.view(B, width).topk(kk, dim=1)
        got = rmat.view(B, width).gather(1, where)
        ok = torch.isfinite(top)
        ids[:, :kk] = torch.where(ok, got, -1)
        sc[:, :kk] = top
        certified = (sc[:, K - 1] >= tail) | (tail <= 0)
        stats.candidate_pairs += total
        return ids, sc, certified

    # ------------------------------------------------------------------ entry point
    @torch.no_grad()
    def search(self, xq: torch.Tensor, exclude: torch.Tensor | None = None,
               query_time: torch.Tensor | None = None,
               stats: RetrievalStats | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-K pool rows for each query row: (ids [B, K] int64, -1 padded; scores [B, K]).

        ``exclude[i]`` is a pool row id query i must not retrieve (itself; -1 for none);
        ``query_time`` with the index's ``pool_time`` keeps only strictly earlier pool rows.
        Always fp32: the task may call it lazily from inside a bf16 autocast training step."""
        with torch.autocast(self.device.type, enabled=False):
            return self._search(xq, exclude, query_time, stats)

    def _search(self, xq, exclude, query_time, stats):
        stats = stats if stats is not None else RetrievalStats()
        stats.query_fields = len(self.qf)
        if (query_time is None) != (self.pool_time is None):
            raise ConfigError("time-restricted retrieval needs timestamps for both pool and queries")
        t0 = time.perf_counter()
        xq = xq.to(self.device)
        B, K = xq.shape[0], self.cfg.k
        ids = torch.full((B, K), -1, dtype=torch.long, device=self.device)
        sc = torch.full((B, K), float("-inf"), device=self.device)
        todo = torch.arange(B, device=self.device)
        for fields in self.levels:  # uncertified queries move on to the next level
            if not todo.numel():
                break
            ft = torch.tensor(fields, dtype=torch.long, device=self.device)
            xt = xq.index_select(0, todo)
            lens = self.count_flat[xt[:, ft].long() + self.offsets[ft]].sum(1)
            # more candidates than pool rows: the dense path is cheaper (and stays so later)
            cheap = lens <= self.n
            order = todo[cheap].index_select(0, torch.argsort(lens[cheap], stable=True))
            lens_s = torch.sort(lens[cheap], stable=True).values.cpu()
            left, a, n = [todo[~cheap]], 0, order.shape[0]
            while a < n:  # chunks of ~pair_budget padded pairs (lists sorted by length)
                lo, hi = a + 1, n
                while lo < hi:  # last b with (b - a) * longest list <= budget
                    mid = (lo + hi + 1) // 2
                    if (mid - a) * int(lens_s[mid - 1]) <= self.cfg.pair_budget:
                        lo = mid
                    else:
                        hi = mid - 1
                q = order[a:lo]
                e = None if exclude is None else exclude.index_select(0, q)
                t = None if query_time is None else query_time.index_select(0, q)
                i, s, ok = self._candidates(xq.index_select(0, q), fields, e, t, stats)
                ids[q], sc[q] = i, s
                left.append(q[~ok])
                a = lo
            todo = torch.cat(left)
            if fields is self.levels[-1] or not cheap.any():
                break
        if todo.numel():
            i, s = self._dense(xq.index_select(0, todo),
                               None if exclude is None else exclude.index_select(0, todo),
                               None if query_time is None else query_time.index_select(0, todo), stats)
            ids[todo], sc[todo] = i, s
        stats.queries += B
        stats.seconds += time.perf_counter() - t0
        return ids, sc


def naive_bm25_scores(query_x, pool_x, query_fields: list[int], k1: float = 1.2,
                      b: float = 0.75) -> torch.Tensor:
    """Reference: textbook Lucene BM25 with tf and document-length terms spelled out (tests)."""
    n, f = pool_x.shape
    tokens = [[(j, int(pool_x[r, j])) for j in range(f)] for r in range(n)]
    avgdl = sum(len(t) for t in tokens) / n
    df: dict = {}
    for t in tokens:
        for tok in set(t):
            df[tok] = df.get(tok, 0) + 1
    out = torch.zeros(query_x.shape[0], n, dtype=torch.float64)
    for qi in range(query_x.shape[0]):
        q = [(j, int(query_x[qi, j])) for j in query_fields]
        for r in range(n):
            dl = len(tokens[r])
            s = 0.0
            for tok in q:
                tf = tokens[r].count(tok)
                if tf:
                    idf = math.log(1 + (n - df[tok] + 0.5) / (df[tok] + 0.5))
                    s += idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))
            out[qi, r] = s
    return out


__all__ = ["RetrievalConfig", "RetrievalStats", "FieldBM25", "naive_bm25_scores"]
