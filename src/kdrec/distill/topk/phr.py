"""PHR (Personalized Hint Regression, Kang et al., KBS'22): a personalisation network turns each
entity's teacher representation ``t`` into that entity's own bridge ``W(t)`` (a ``d_t x d_s``
matrix: a shared matrix plus an MLP-generated personal part) and the student regresses the teacher:
``sum ||t - W(t) s||^2`` over the batch's unique users plus 0.5 x over its unique items."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kdrec.distill.base import register_distiller
from kdrec.distill.topk.common import TopKDistiller


class PersonalBridge(nn.Module):
    def __init__(self, d_s: int, d_t: int):
        super().__init__()
        self.d_s, self.d_t = d_s, d_t
        self.shared = nn.Parameter(torch.randn(d_t, d_s) / d_s ** 0.5)
        self.net = nn.Sequential(nn.Linear(d_t, d_t), nn.ReLU(), nn.Linear(d_t, d_t * d_s))
        nn.init.zeros_(self.net[2].weight)  # start from the shared bridge
        nn.init.zeros_(self.net[2].bias)

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        W = self.shared + self.net(t).view(-1, self.d_t, self.d_s)
        return torch.einsum("bts,bs->bt", W, s)

    def loss(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (t - self(s, t)).pow(2).sum()


@register_distiller("phr")
class PHR(TopKDistiller):
    @dataclass
    class Config:
        weight: float = 1e-2

    def build_aux(self, ctx) -> nn.ModuleDict:
        d_s, d_t = ctx.student.embed_dim, ctx.teacher.embed_dim
        return nn.ModuleDict({"phr_user": PersonalBridge(d_s, d_t), "phr_item": PersonalBridge(d_s, d_t)})

    def kd_loss(self, U, I, batch) -> torch.Tensor:
        u = torch.unique(batch.users)
        i = torch.unique(torch.cat([batch.pos, batch.neg.flatten()]))
        return (self._aux["phr_user"].loss(U[u], self.T_user[u])
                + 0.5 * self._aux["phr_item"].loss(I[i], self.T_item[i]))
