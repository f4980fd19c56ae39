"""LightGCN (He et al. 2020): ego embeddings propagated ``num_layers`` times over the symmetric
normalised user-item graph ``D^-1/2 A D^-1/2`` (``torch.sparse`` CSR), final = mean of layers 0..L.

The adjacency is symmetric, so the backward of ``A @ x`` is ``A @ grad``: :class:`SymmetricSpMM`
says so to autograd, which otherwise builds the CSR transpose (a sort of every non-zero) in every
backward pass (3.4x slower per training step on Gowalla, ``scripts/bench_topk_propagation.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from kdrec.errors import ConfigError
from kdrec.models.registry import register_model
from kdrec.models.topk.base import TopKModel, TopKModelConfig


def normalized_adjacency(users: torch.Tensor, items: torch.Tensor, num_users: int,
                         num_items: int) -> torch.Tensor:
    """Sparse CSR ``D^-1/2 A D^-1/2`` of the bipartite graph (users first, then items)."""
    n = num_users + num_items
    rows = torch.cat([users, items + num_users])
    cols = torch.cat([items + num_users, users])
    deg = torch.bincount(rows, minlength=n).double()
    dinv = deg.pow(-0.5)
    dinv[deg == 0] = 0
    vals = (dinv[rows] * dinv[cols]).float()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": it is what we want here
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=False)
        return coo.coalesce().to_sparse_csr()


class SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a constant symmetric sparse ``A``; gradient ``A @ g`` (``A^T = A``)."""

    @staticmethod
    def forward(ctx, A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.A = A
        return A @ x

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return None, ctx.A @ g


@dataclass
class LightGCNConfig(TopKModelConfig):
    num_layers: int = 3


@register_model("lightgcn")
class LightGCN(TopKModel):
    Config = LightGCNConfig

    def __init__(self, feature_map, cfg: LightGCNConfig):
        super().__init__(feature_map, cfg)
        if getattr(feature_map, "train_users", None) is None:
            raise ConfigError("lightgcn needs the train interactions (feature_map.train_users/items)")
        self.register_buffer("adj", normalized_adjacency(
            feature_map.train_users.cpu(), feature_map.train_items.cpu(), self.num_users, self.num_items),
            persistent=False)
        self.nnz = int(feature_map.train_users.numel()) * 2

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        e = torch.cat([self.user_emb.weight, self.item_emb.weight])
        acc = e
        for _ in range(self.cfg.num_layers):
            e = SymmetricSpMM.apply(self.adj, e) if e.requires_grad else self.adj @ e
            acc = acc + e
        acc = acc / (self.cfg.num_layers + 1)
        return acc[:self.num_users], acc[self.num_users:]

    def offline_flops(self) -> float:
        """Propagation, run once per set of weights (training step or export), not per query:
        per layer a sparse product (2 FLOPs per non-zero per dim) and the running sum; the mean."""
        d, L = self.embed_dim, self.cfg.num_layers
        n = self.num_users + self.num_items
        return L * (2.0 * self.nnz * d + n * d) + n * d
