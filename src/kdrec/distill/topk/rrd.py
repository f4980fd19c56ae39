"""RRD (Kang et al., CIKM'20) and IR-RRD (item-side ranking regularisation added to RRD).

Per user: K "interesting" items sampled from the teacher's top-N unobserved items with
probability ``exp(-r/T)`` and kept in teacher order (``sample_topk: false`` takes the top-K
directly), and L "uninteresting" items uniform among the rest (not train, not top-N); resampled at
the start of every epoch. Loss = ``-log`` of the relaxed Plackett-Luce probability: the
interesting items in their order, all of them above all uninteresting ones. Applied to the unique
users of each batch. IR-RRD adds the same loss on the item side (interesting *users* of each
batch item from the teacher's top-N users of that item) with its own weight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from kdrec.distill.base import register_distiller
from kdrec.distill.topk.common import (TopKDistiller, epoch_generator, gather_rows, member,
                                       relaxed_ranking_loss, sample_outside, sample_ranked, sorted_pair_keys,
                                       teacher_topn, teacher_topn_users)

log = logging.getLogger("kdrec")


@register_distiller("rrd")
class RRD(TopKDistiller):
    @dataclass
    class Config:
        weight: float = 1e-3  # lambda (BPR students)
        K: int = 40  # interesting items per user
        L: int = 40  # uninteresting items per user
        N: int = 500  # teacher top-N the interesting items come from
        T: float = 10.0  # rank-discount temperature: p ~ exp(-rank / T)
        sample_topk: bool = True  # false: interesting = the teacher's top-K as is

    def setup(self, ctx) -> None:
        super().setup(ctx)
        task = ctx.task
        n = min(self.cfg.N, max(self.cfg.K, task.num_items // 2))  # leave room for uninteresting items
        if n < self.cfg.N:
            log.warning("rrd: N=%d clamped to %d for %d items", self.cfg.N, n, task.num_items)
        self.topN = teacher_topn(ctx, n)
        self.topN_keys = sorted_pair_keys(self.topN, task.num_items)

    def _sample_user_side(self, epoch: int) -> None:
        task, c = self.ctx.task, self.cfg
        g = epoch_generator(self.ctx.seed, epoch)
        self.interesting = sample_ranked(self.topN, c.K, c.T, c.sample_topk, g)

        def bad(users, items):
            return task.is_train_pair(users, items) | member(self.topN_keys, users, items, task.num_items)

        self.uninteresting = sample_outside(task.num_users, task.num_items, c.L, g, task.device, bad)

    def on_epoch_start(self, epoch: int) -> None:
        self._sample_user_side(epoch)

    def user_side(self, U, I, batch) -> torch.Tensor:
        users = torch.unique(batch.users)
        u = U[users][:, None, :]
        s_int = (u * gather_rows(I, gather_rows(self.interesting, users))).sum(-1)
        s_un = (u * gather_rows(I, gather_rows(self.uninteresting, users))).sum(-1)
        return relaxed_ranking_loss(s_int, s_un).sum()

    def kd_loss(self, U, I, batch) -> torch.Tensor:
        return self.user_side(U, I, batch)


@register_distiller("ir_rrd")
class IRRRD(RRD):
    """RRD on users plus item-side RRD: ``BPR + weight * RRD + item_weight * IR``."""

    @dataclass
    class Config(RRD.Config):
        item_weight: float = 5e-4
        item_K: int = 20
        item_L: int = 20
        item_N: int = 100

    def setup(self, ctx) -> None:
        super().setup(ctx)
        n = min(self.cfg.item_N, max(self.cfg.item_K, ctx.task.num_users // 2))
        self.topN_users = teacher_topn_users(ctx, n)
        self.topN_users_keys = sorted_pair_keys(self.topN_users, ctx.task.num_users)

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        task, c = self.ctx.task, self.cfg
        g = epoch_generator(self.ctx.seed, epoch, salt=1)
        self.interesting_users = sample_ranked(self.topN_users, c.item_K, c.T, c.sample_topk, g)

        def bad(items, users):
            return task.is_train_pair(users, items) | member(self.topN_users_keys, items, users, task.num_users)

        self.uninteresting_users = sample_outside(task.num_items, task.num_users, c.item_L, g, task.device, bad)

    def item_side(self, U, I, batch) -> torch.Tensor:
        items = torch.unique(batch.pos)
        i = I[items][:, None, :]
        s_int = (i * gather_rows(U, gather_rows(self.interesting_users, items))).sum(-1)
        s_un = (i * gather_rows(U, gather_rows(self.uninteresting_users, items))).sum(-1)
        return relaxed_ranking_loss(s_int, s_un).sum()

    def weighted_kd(self, U, I, batch) -> torch.Tensor:
        return (self.cfg.weight * self.user_side(U, I, batch)
                + self.cfg.item_weight * self.item_side(U, I, batch))
