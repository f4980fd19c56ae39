"""LightGCN (He et al. 2020): ego embeddings propagated ``num_layers`` times over the symmetric
normalised user-item graph ``D^-1/2 A D^-1/2``, final = mean of layers 0..L.

The product ``A @ x`` takes the CSR rows of ``A`` as weighted bags of ``x``'s rows
(``embedding_bag``, mode sum, int32 indices): the same sums as ``torch.sparse`` CSR @ dense, but
through FBGEMM's kernel instead of MKL's sparse one, which runs a slow path on AMD processors
(Gowalla, one product at d = 64, one thread: 147-198 -> 25 ms on an AMD EPYC; docs/topk.md,
"LightGCN's propagation as bags"). The adjacency is symmetric, so the backward of ``A @ x`` is
``A @ grad``: :class:`SymmetricSpMM` says so to autograd, which would otherwise scatter the
gradient back through every non-zero.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

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


class Adjacency(NamedTuple):
    """A sparse matrix's CSR rows as ``embedding_bag`` bags: row ``r`` is ``cols[offsets[r]:
    offsets[r + 1]]`` weighted by the same slice of ``vals``."""

    cols: torch.Tensor
    offsets: torch.Tensor
    vals: torch.Tensor

    @classmethod
    def of_csr(cls, A: torch.Tensor) -> "Adjacency":
        index = torch.int32 if A._nnz() < 2**31 else torch.int64  # int32 is FBGEMM's faster kernel
        return cls(A.col_indices().to(index), A.crow_indices()[:-1].to(index), A.values())

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(self.cols, x, self.offsets, mode="sum", per_sample_weights=self.vals)


class SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a constant symmetric ``A`` (bags or a ``torch.sparse`` matrix); gradient
    ``A @ g`` (``A^T = A``)."""

    @staticmethod
    def forward(ctx, A: Adjacency | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.A = A
        return A @ x

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return None, ctx.A @ g.contiguous()


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
        A = Adjacency.of_csr(normalized_adjacency(
            feature_map.train_users.cpu(), feature_map.train_items.cpu(), self.num_users, self.num_items))
        for name, t in zip(("adj_cols", "adj_offsets", "adj_vals"), A):  # buffers: they follow .to(device)
            self.register_buffer(name, t, persistent=False)
        self.nnz = int(feature_map.train_users.numel()) * 2

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        A = Adjacency(self.adj_cols, self.adj_offsets, self.adj_vals)
        e = torch.cat([self.user_emb.weight, self.item_emb.weight])
        acc = e
        for _ in range(self.cfg.num_layers):
            e = SymmetricSpMM.apply(A, e) if e.requires_grad else A @ e
            acc = acc + e
        acc = acc / (self.cfg.num_layers + 1)
        return acc[:self.num_users], acc[self.num_users:]

    def offline_flops(self) -> float:
        """Propagation, run once per set of weights (training step or export), not per query:
        per layer a sparse product (2 FLOPs per non-zero per dim) and the running sum; the mean."""
        d, L = self.embed_dim, self.cfg.num_layers
        n = self.num_users + self.num_items
        return L * (2.0 * self.nnz * d + n * d) + n * d
