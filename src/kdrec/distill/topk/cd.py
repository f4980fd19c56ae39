"""CD (Collaborative Distillation, Lee et al., 2019), teacher-guided: per user and epoch,
``n_distill`` unobserved items sampled without replacement from the teacher's top ``pool`` with
rank-discounted probability ``exp(-r / (pool * T))``; the student fits the teacher's soft labels
``q = sigmoid((t + t2) / t1)`` on them by binary cross-entropy. Unique batch users."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdrec.distill.base import register_distiller
from kdrec.distill.topk.common import TopKDistiller, epoch_generator, rank_discount_probs, teacher_topn


def cd_loss(s: torch.Tensor, t: torch.Tensor, t1: float, t2: float) -> torch.Tensor:
    """Summed BCE of student logits ``s`` against soft labels ``sigmoid((t + t2) / t1)``."""
    q = torch.sigmoid((t + t2) / t1)
    return F.binary_cross_entropy_with_logits(s, q, reduction="sum")


@register_distiller("cd")
class CD(TopKDistiller):
    @dataclass
    class Config:
        weight: float = 0.1
        pool: int = 100  # teacher top items the samples come from
        n_distill: int = 10  # sampled items per user per epoch
        T: float = 1.0
        t1: float = 1.0  # soft-label temperature
        t2: float = 0.0  # soft-label shift

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.top = teacher_topn(ctx, self.cfg.pool)

    def on_epoch_start(self, epoch: int) -> None:
        c = self.cfg
        g = epoch_generator(self.ctx.seed, epoch, salt=3)
        p = rank_discount_probs(self.top.shape[1], c.pool * c.T, "cpu").expand(self.top.shape[0], -1)
        idx = torch.multinomial(p, c.n_distill, replacement=False, generator=g).to(self.top.device)
        self.samples = self.top.gather(1, idx)

    def kd_loss(self, U, I, batch) -> torch.Tensor:
        users = torch.unique(batch.users)
        items = self.samples[users]
        s = (U[users][:, None, :] * I[items]).sum(-1)
        t = (self.T_user[users][:, None, :] * self.T_item[items]).sum(-1)
        return cd_loss(s, t, self.cfg.t1, self.cfg.t2)
