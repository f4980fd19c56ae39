"""DE (Distillation Experts, Kang et al., CIKM'20) and DE-RRD (DE + RRD).

Per side (users, items): ``M`` experts ``d_s -> (d_s + d_t)/2 -> d_t`` and a selection network
``softmax(Linear(t))`` on the teacher representation; one expert is picked per entity by
Gumbel-softmax with temperature annealed geometrically from ``T_start`` to ``T_end`` over
``anneal_epochs`` epochs. Loss ``sum ||t - sum_m a_m E_m(s)||^2`` over the batch's unique users
plus 0.5 x that over its unique positive and negative items. Representations are the models'
final ones (``embed()``: the tables for MF, the propagated ones for LightGCN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kdrec.distill.base import register_distiller
from kdrec.distill.topk.common import DistillExperts, TopKDistiller, annealed_temperature
from kdrec.distill.topk.rrd import RRD


class DEMixin:
    def build_de(self, ctx) -> nn.ModuleDict:
        d_s, d_t = ctx.student.embed_dim, ctx.teacher.embed_dim
        self.temperature = self.cfg.T_start
        M, drop = self.cfg.num_experts, self.cfg.drop_below
        return nn.ModuleDict({"de_user": DistillExperts(M, d_s, d_t, drop),
                              "de_item": DistillExperts(M, d_s, d_t, drop)})

    def anneal(self, epoch: int) -> None:
        c = self.cfg
        self.temperature = annealed_temperature(epoch, c.T_start, c.T_end, c.anneal_epochs)

    def de_loss(self, U, I, batch) -> torch.Tensor:
        T, aux = self.temperature, self._aux
        u = torch.unique(batch.users)
        # unique positives and unique negatives, each weighted 0.5: one pass over their union,
        # an item in both sets weighted 1 (same sum as two passes, fewer expert evaluations)
        items = torch.cat([torch.unique(batch.pos), torch.unique(batch.neg.flatten())])
        i, count = torch.unique(items, return_counts=True)
        lu = aux["de_user"].loss(U[u], self.T_user[u], T)
        li = aux["de_item"].loss(I[i], self.T_item[i], T, weight=0.5 * count.to(I.dtype))
        return lu + li


@dataclass
class DEConfig:
    weight: float = 1e-2
    num_experts: int = 30
    T_start: float = 1.0
    T_end: float = 1e-10
    anneal_epochs: int = 50
    drop_below: float = 1e-6  # experts with a smaller Gumbel-softmax weight are not evaluated (0: all)


@register_distiller("de")
class DE(DEMixin, TopKDistiller):
    Config = DEConfig

    def build_aux(self, ctx) -> nn.ModuleDict:
        return self.build_de(ctx)

    def on_epoch_start(self, epoch: int) -> None:
        self.anneal(epoch)

    def kd_loss(self, U, I, batch) -> torch.Tensor:
        return self.de_loss(U, I, batch)


@register_distiller("de_rrd")
class DERRD(DEMixin, RRD):
    """``BPR + weight * RRD + de_weight * DE``."""

    @dataclass
    class Config(RRD.Config):
        de_weight: float = 1e-2
        num_experts: int = 30
        T_start: float = 1.0
        T_end: float = 1e-10
        anneal_epochs: int = 50
        drop_below: float = 1e-6

    def build_aux(self, ctx) -> nn.ModuleDict:
        return self.build_de(ctx)

    def on_epoch_start(self, epoch: int) -> None:
        RRD.on_epoch_start(self, epoch)
        self.anneal(epoch)

    def weighted_kd(self, U, I, batch) -> torch.Tensor:
        return self.cfg.weight * self.user_side(U, I, batch) + self.cfg.de_weight * self.de_loss(U, I, batch)
