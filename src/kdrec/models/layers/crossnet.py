"""Cross networks (DCN-V2, Wang et al. WWW 2021) over the flattened embeddings x0 [B, F*D].

Full rank (``CrossNetV2``):  x_{l+1} = x0 * (W_l x_l + b_l) + x_l.
Low-rank mixture of experts (``CrossNetMix``): each of K experts maps x_l through
U_k tanh(C_k tanh(V_k^T x_l)) (rank r), the expert outputs x0 * (... + b_l) are mixed by a
softmax gate G(x_l), and the residual x_l is added.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossNetV2(nn.Module):
    def __init__(self, in_dim: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(in_dim, in_dim) for _ in range(num_layers))
        self.out_dim = in_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for lin in self.layers:
            x = x0 * lin(x) + x
        return x


class CrossNetMix(nn.Module):
    def __init__(self, in_dim: int, num_layers: int, low_rank: int = 32, num_experts: int = 4):
        super().__init__()
        self.num_layers = num_layers
        std = 0.01
        self.U = nn.Parameter(torch.randn(num_layers, num_experts, in_dim, low_rank) * std)
        self.V = nn.Parameter(torch.randn(num_layers, num_experts, in_dim, low_rank) * std)
        self.C = nn.Parameter(torch.randn(num_layers, num_experts, low_rank, low_rank) * std)
        self.bias = nn.Parameter(torch.zeros(num_layers, in_dim))
        self.gates = nn.ModuleList(nn.Linear(in_dim, 1, bias=False) for _ in range(num_experts))
        self.out_dim = in_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for i in range(self.num_layers):
            gate = torch.softmax(torch.cat([g(x) for g in self.gates], dim=1), dim=1)  # [B, K]
            v = torch.tanh(torch.einsum("bn,knr->bkr", x, self.V[i]))
            v = torch.tanh(torch.einsum("bkr,kqr->bkq", v, self.C[i]))
            u = torch.einsum("bkq,knq->bkn", v, self.U[i])  # [B, K, n]
            experts = x0.unsqueeze(1) * (u + self.bias[i])
            x = torch.einsum("bkn,bk->bn", experts, gate) + x
        return x
