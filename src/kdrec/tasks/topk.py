"""Top-K task: BPR triples sampled by tensor ops, full-ranking Recall/NDCG/Hit@K, teacher top-N caches.

An epoch draws as many (user, positive) pairs as there are train interactions: with the dataset's
``sampling: interaction`` (default) every train interaction once in a seeded random order; with
``sampling: user`` (LightGCN's and freerec's sampler) a uniform user with train items, then one of
its train items, each draw independent. Each pair gets one negative (``trainer.negatives``: that
many) drawn uniformly from the items the user has not interacted with in train (rejection
sampling, vectorized: a few rounds over the rejected rows, all at once).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from kdrec.cache import cached_torch
from kdrec.data.interactions import InteractionDataset
from kdrec.errors import ConfigError
from kdrec.eval.ranking import CSR, TopKRanker, ranking_metrics, topn
from kdrec.tasks.registry import register_task

DEFAULT_KS = (10, 20, 50)


def redraw_rejected(rows: torch.Tensor, ids: torch.Tensor, draw, bad, rounds: int) -> torch.Tensor:
    """``rounds`` times: ``ids = where(bad(rows, ids), draw(), ids)``, with ``bad`` a pure function
    of each (row, id) pair. Same result and the same generator draws as that loop, but ``bad`` is
    evaluated only on the entries still rejected: an accepted entry stays accepted, so the loop's
    checks of the others (all of them, every round: 40 of the 51 `searchsorted` calls per RRD
    epoch) change nothing."""
    ids = ids.clone()
    flat, flat_rows = ids.view(-1), rows.reshape(-1)
    pending = torch.nonzero(bad(flat_rows, flat)).squeeze(1)
    for r in range(rounds):
        fresh = draw().reshape(-1)  # drawn even when nothing is pending: the stream stays the same
        if pending.numel() == 0:
            continue
        flat[pending] = fresh[pending]
        if r + 1 < rounds:
            pending = pending[bad(flat_rows[pending], flat[pending])]
    return ids


@dataclass
class TopKBatch:
    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor

    def __len__(self) -> int:
        return self.users.shape[0]


@register_task("topk")
class TopKTask:
    kind = "topk"
    monitor = "ndcg@20"
    monitor_mode = "max"
    loss_metric = None

    def __init__(self, data: InteractionDataset, device: torch.device, batch_size: int,
                 eval_batch_size: int = 65536, ks: tuple[int, ...] | None = None,
                 user_chunk: int | None = None):
        self.data = data
        self.device = device
        self.batch_size = batch_size
        self.ks = tuple(ks or getattr(data, "ks", DEFAULT_KS))
        self.user_chunk = user_chunk
        fm = data.feature_map
        self.num_users, self.num_items = fm.num_users, fm.num_items
        self.splits = {k: v.to(device) for k, v in data.splits.items()}
        tr = self.splits["train"]
        self.train_key = tr.users * self.num_items + tr.items  # sorted (splits are (user, item)-sorted)
        self.csr = {k: CSR(v.users, v.items, self.num_users) for k, v in self.splits.items()}
        self._item_csr = None
        self.sampling = getattr(data, "sampling", "interaction")
        if self.sampling not in ("interaction", "user"):
            raise ConfigError(f"dataset.sampling: {self.sampling!r} is not 'interaction' or 'user'")
        self._train_users = torch.nonzero(self.csr["train"].counts > 0).flatten()

    # ------------------------------------------------------------------ basics
    @property
    def feature_map(self):
        return self.data.feature_map

    def num_rows(self, split: str = "train") -> int:
        return len(self.splits[split])

    def exclusions(self, split: str) -> list[CSR]:
        """Known interactions not to rank when scoring ``split``: train (+ valid for test)."""
        out = [self.csr["train"]]
        if split == "test" and self.data.valid_is == "valid" and len(self.splits["valid"]):
            out.append(self.csr["valid"])
        return out

    def is_train_pair(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        q = users * self.num_items + items
        pos = torch.searchsorted(self.train_key, q).clamp_max(self.train_key.numel() - 1)
        return self.train_key[pos] == q

    def sample_negatives(self, users: torch.Tensor, generator: torch.Generator | None = None,
                         rounds: int = 10, avoid=None) -> torch.Tensor:
        """Uniform items per entry of ``users`` (any shape) outside the user's train items (and
        outside ``avoid(users, items) -> bool mask`` when given), by vectorized rejection."""
        def draw():
            return torch.randint(self.num_items, users.shape, generator=generator).to(self.device)

        def bad(u, i):
            b = self.is_train_pair(u, i)
            return b | avoid(u, i) if avoid is not None else b

        return redraw_rejected(users, draw(), draw, bad, rounds)

    def epoch_pairs(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One epoch's (users, positives), ``len(train)`` of them, by the dataset's sampling."""
        tr = self.splits["train"]
        n = len(tr)
        if self.sampling == "user":
            csr = self.csr["train"]
            pick = torch.randint(len(self._train_users), (n,), generator=generator).to(self.device)
            users = self._train_users[pick]
            off = (torch.rand(n, generator=generator).to(self.device) * csr.counts[users]).long()
            return users, csr.items[csr.indptr[users] + off.clamp_max(csr.counts[users] - 1)]
        perm = torch.randperm(n, generator=generator).to(self.device)
        return tr.users[perm], tr.items[perm]

    def train_batches(self, generator: torch.Generator, batch_size: int | None = None,
                      negatives: int = 1) -> Iterator[TopKBatch]:
        """Batches of (users [B], pos [B], neg [B]), or neg [B, negatives] with more than one
        negative per positive (drawn batch by batch: an epoch's [n, 300] would be 2 GB)."""
        bs = batch_size or self.batch_size
        users, pos = self.epoch_pairs(generator)
        neg = self.sample_negatives(users, generator) if negatives == 1 else None
        for start in range(0, users.shape[0], bs):
            sl = slice(start, start + bs)
            if neg is not None:
                yield TopKBatch(users[sl], pos[sl], neg[sl])
            else:
                u = users[sl]
                yield TopKBatch(u, pos[sl], self.sample_negatives(u[:, None].expand(-1, negatives), generator))

    # ------------------------------------------------------------------ losses
    @staticmethod
    def bpr(U: torch.Tensor, I: torch.Tensor, batch: TopKBatch) -> torch.Tensor:
        """BPR, averaged over the batch (and over the negatives of each positive when several)."""
        u = U[batch.users]
        pos = (u * I[batch.pos]).sum(-1)
        if batch.neg.dim() == 1:
            return -F.logsigmoid(pos - (u * I[batch.neg]).sum(-1)).mean()
        neg = (I[batch.neg] * u.unsqueeze(1)).sum(-1)  # [B, K]; 1.3x faster than bmm's matvecs on CPU
        return -F.logsigmoid(pos.unsqueeze(-1) - neg).mean()

    def loss_from(self, model: nn.Module, U: torch.Tensor, I: torch.Tensor, batch: TopKBatch) -> torch.Tensor:
        """BPR + the model's L2 on the batch's ego embeddings, given ``(U, I) = model.embed()``
        (distillers call this so a LightGCN student propagates once per batch)."""
        return self.bpr(U, I, batch) + model.reg_loss(batch.users, batch.pos, batch.neg)

    def task_loss(self, model: nn.Module, batch: TopKBatch) -> torch.Tensor:
        U, I = model.embed()
        return self.loss_from(model, U, I, batch)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def embeddings(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        was = model.training
        model.eval()
        U, I = model.embed()
        model.train(was)
        return U.detach(), I.detach()

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        U, I = self.embeddings(model)
        return ranking_metrics(U, I, self.csr[split], self.exclusions(split), list(self.ks),
                               self.user_chunk)

    def topn(self, model: nn.Module, n: int) -> torch.Tensor:
        """[num_users, n] item ids by the model's score, train items excluded."""
        U, I = self.embeddings(model)
        return topn(U, I, n, [self.csr["train"]], self.user_chunk)

    def topn_users(self, model: nn.Module, n: int) -> torch.Tensor:
        """[num_items, n] user ids by the model's score, train interactions excluded (item side)."""
        if self._item_csr is None:
            tr = self.splits["train"]
            self._item_csr = CSR(tr.items, tr.users, self.num_items)
        U, I = self.embeddings(model)
        return topn(I, U, n, [self._item_csr], self.user_chunk)

    def teacher_cache(self, name: str, teacher_dir: Path | None, compute) -> torch.Tensor:
        """``compute()`` once per teacher and cache name, stored under ``<teacher_dir>/cache`` (locked,
        complete or absent: :mod:`kdrec.cache`)."""
        path = Path(teacher_dir) / "cache" / f"{name}.pt" if teacher_dir else None
        return cached_torch(path, compute, {"data": self.data.signature},
                            what=f"teacher cache {name}").to(self.device)

    # ------------------------------------------------------------------ cost
    def ranker(self, model: nn.Module, k: int = 20) -> TopKRanker:
        """The served form of ``model``: its final representations computed once, top-``k``
        over all items per requested user."""
        U, I = self.embeddings(model)
        return TopKRanker(U, I, k)

    def profile(self, model: nn.Module, latency: bool = True, repeats: int = 3) -> dict[str, float]:
        """Cost of serving ``model`` (:meth:`ranker`): per-user FLOPs counted on the ranker's
        actual run (scoring all items; the top-k selection is comparisons, not FLOPs), the
        one-off FLOPs of computing the representations (``offline_flops``: LightGCN's
        propagation, 0 for MF), parameters and, when asked, the latency of ranking all items for
        1 and for 4096 users, and of the one-off representation pass."""
        from kdrec.bench.flops import count_flops, latency_ms, param_counts

        was = model.training
        model.eval()
        t0 = time.perf_counter()
        rk = self.ranker(model)
        offline_ms = (time.perf_counter() - t0) * 1e3
        users = torch.arange(min(4096, self.num_users), device=self.device) % self.num_users
        f = count_flops(rk, users[:64], batch=users[:64].shape[0])
        out = {"flops_per_sample": f["flops_per_sample"], "flops_matmul": f["flops_matmul"],
               "flops_elementwise": f["flops_elementwise"],
               "offline_flops": float(getattr(model, "offline_flops", lambda: 0.0)()),
               "embedding_lookups": 1.0 + model.num_items, **param_counts(model),
               "embed_dim": model.embed_dim}
        if latency:
            big = torch.arange(4096, device=self.device) % self.num_users
            out["latency_ms_b1"] = latency_ms(rk, users[:1], repeats=15 * repeats)
            out["latency_ms_b4096"] = latency_ms(rk, big, repeats=repeats)
            out["latency_ms_offline"] = offline_ms
        model.train(was)
        return out
