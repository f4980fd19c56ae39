"""Top-K model contract: a plain ``nn.Module`` with user and item tables.

* ``embed()`` -> ``(U [num_users, d], I [num_items, d])``: the final representations (MF: the
  tables; LightGCN: the layer-averaged propagation). Scores are inner products ``U[u] . I[i]``.
* ``reg_loss(users, pos, neg)``: the L2 on the batch's *ego* embeddings (LightGCN / BPR style,
  ``reg * (|u|^2 + |i|^2 + |j|^2) / 2 / batch``).
* ``offline_flops()``: FLOPs of computing the final representations once (LightGCN's propagation;
  0 for MF). Serving cost per user is measured on the task's ranker (``TopKTask.profile``).

Teacher or student is only a matter of ``embed_dim x dim_ratio`` (students default to 0.1 x the
teacher's dimension through their yaml). No model picks a device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from kdrec.errors import ConfigError
from kdrec.schema import ge, gt


@dataclass
class TopKModelConfig:
    embed_dim: int = field(default=64, metadata=ge(1))
    # the model's dimension is max(1, round(embed_dim * dim_ratio))
    dim_ratio: float = field(default=1.0, metadata=gt(0))
    reg: float = field(default=1e-4, metadata=ge(0))  # L2 on the batch's ego embeddings
    init_std: float = field(default=0.1, metadata=gt(0))

    @property
    def dim(self) -> int:
        return max(1, int(round(self.embed_dim * self.dim_ratio)))


class TopKModel(nn.Module):
    Config = TopKModelConfig

    def __init__(self, feature_map, cfg: TopKModelConfig):
        super().__init__()
        for k in ("num_users", "num_items"):
            if not hasattr(feature_map, k):
                raise ConfigError(f"model {type(self).__name__} is a top-K model: it needs a top-K "
                                  f"dataset (feature map without {k}); pick dataset=movielens_100k_topk, ...")
        self.cfg = cfg
        self.num_users, self.num_items = feature_map.num_users, feature_map.num_items
        self.embed_dim = cfg.dim
        self.user_emb = nn.Embedding(self.num_users, self.embed_dim)
        self.item_emb = nn.Embedding(self.num_items, self.embed_dim)
        nn.init.normal_(self.user_emb.weight, std=cfg.init_std)
        nn.init.normal_(self.item_emb.weight, std=cfg.init_std)

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs (broadcasting: users [B, 1] x items [B, n] works)."""
        U, I = self.embed()
        return (U[users] * I[items]).sum(-1)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        U, I = self.embed()
        return U[users] @ I.T

    def reg_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        if self.cfg.reg == 0:
            return torch.zeros((), device=users.device)
        u, i, j = self.user_emb(users), self.item_emb(pos), self.item_emb(neg)
        return self.cfg.reg * 0.5 * (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()) / users.shape[0]

    def offline_flops(self) -> float:
        return 0.0
