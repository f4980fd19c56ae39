"""Topology Distillation (Kang et al., KDD'21).

* ``ftd`` (full): over the batch's unique users and items together, the student's cosine
  similarity matrix matches the teacher's: ``sum_{a,b} (cos_s(a,b) - cos_t(a,b))^2``.
* ``htd`` (hierarchical): ``K`` preference groups per side from a selection network on the teacher
  representation (trained with DE-style experts and Gumbel-softmax, the "group assignment" loss
  GA); the topology loss keeps (i) entity-level similarities only between entities of the same
  group whose teacher cosine is positive (as the reference; ``positive_only: false`` keeps every
  same-group pair) and (ii) group-level similarities between group prototypes (mean representations of the
  batch members of each group). ``HTD = gamma * TD + (1 - gamma) * GA``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdrec.distill.base import register_distiller
from kdrec.distill.topk.common import DistillExperts, TopKDistiller, annealed_temperature


def cosine_matrix(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    x = F.normalize(x, dim=-1, eps=1e-12)
    y = x if y is None else F.normalize(y, dim=-1, eps=1e-12)
    return x @ y.T


def full_topology_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (cosine_matrix(s) - cosine_matrix(t)).pow(2).sum()


def hierarchical_topology_loss(s: torch.Tensor, t: torch.Tensor, group: torch.Tensor,
                               num_groups: int, positive_only: bool = True) -> torch.Tensor:
    """Entity level within groups + group level between the prototypes of present groups.
    ``positive_only``: entity pairs count only where the teacher's cosine is > 0 (the reference)."""
    Z = F.one_hot(group, num_groups).to(s.dtype)  # [n, G]
    same = Z @ Z.T
    ct = cosine_matrix(t)
    if positive_only:
        same = same * (ct > 0).to(s.dtype)
    entity = ((cosine_matrix(s) - ct).pow(2) * same).sum()
    count = Z.sum(0)
    present = (count > 0).to(s.dtype)
    mean = Z.T / count.clamp_min(1)[:, None]  # [G, n]
    ps, pt = mean @ s, mean @ t
    pair = present[:, None] * present[None, :]
    group_level = ((cosine_matrix(ps) - cosine_matrix(pt)).pow(2) * pair).sum()
    return entity + group_level


@register_distiller("ftd")
class FTD(TopKDistiller):
    @dataclass
    class Config:
        weight: float = 1e-3

    def kd_loss(self, U, I, batch) -> torch.Tensor:
        u = torch.unique(batch.users)
        i = torch.unique(torch.cat([batch.pos, batch.neg]))
        s = torch.cat([U[u], I[i]])
        t = torch.cat([self.T_user[u], self.T_item[i]])
        return full_topology_loss(s, t)


@register_distiller("htd")
class HTD(TopKDistiller):
    @dataclass
    class Config:
        weight: float = 1e-3
        num_groups: int = 30
        gamma: float = 0.5  # TD vs group-assignment balance
        T_start: float = 1.0
        T_end: float = 1e-10
        anneal_epochs: int = 50
        drop_below: float = 1e-6  # experts with a smaller Gumbel-softmax weight are not evaluated (0: all)
        positive_only: bool = True  # entity pairs with teacher cosine > 0 only (reference); false: all

    def build_aux(self, ctx) -> nn.ModuleDict:
        d_s, d_t, K = ctx.student.embed_dim, ctx.teacher.embed_dim, self.cfg.num_groups
        self.temperature = self.cfg.T_start
        h = self.cfg.drop_below
        return nn.ModuleDict({"ga_user": DistillExperts(K, d_s, d_t, h), "ga_item": DistillExperts(K, d_s, d_t, h)})

    def on_epoch_start(self, epoch: int) -> None:
        c = self.cfg
        self.temperature = annealed_temperature(epoch, c.T_start, c.T_end, c.anneal_epochs)

    def kd_loss(self, U, I, batch) -> torch.Tensor:
        aux, K, T = self._aux, self.cfg.num_groups, self.temperature
        u = torch.unique(batch.users)
        i = torch.unique(torch.cat([batch.pos, batch.neg]))
        tu, ti = self.T_user[u], self.T_item[i]
        ga = aux["ga_user"].loss(U[u], tu, T) + aux["ga_item"].loss(I[i], ti, T)
        with torch.no_grad():  # groups: the selection network's argmax (items offset by K)
            group = torch.cat([aux["ga_user"].assign(tu).argmax(-1), aux["ga_item"].assign(ti).argmax(-1) + K])
        td = hierarchical_topology_loss(torch.cat([U[u], I[i]]), torch.cat([tu, ti]), group, 2 * K,
                                        self.cfg.positive_only)
        g = self.cfg.gamma
        return g * td + (1 - g) * ga
