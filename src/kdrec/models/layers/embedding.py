"""One embedding table for all fields, addressed by per-field offsets (torchrec's EmbeddingBag idea,
kept simple): teacher and student can share the very same module."""

from __future__ import annotations

import torch
from torch import nn


class FieldEmbedding(nn.Module):
    def __init__(self, vocab_sizes: list[int], dim: int, init_std: float = 1e-4):
        super().__init__()
        self.vocab_sizes = list(vocab_sizes)
        self.dim = dim
        offsets = torch.tensor([0, *vocab_sizes[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.weight = nn.Parameter(torch.empty(sum(vocab_sizes), dim))
        nn.init.normal_(self.weight, std=init_std)

    @property
    def num_fields(self) -> int:
        return len(self.vocab_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: int64 [B, F] local ids -> [B, F, dim] (or [B, F] when dim == 1 is squeezed by caller)."""
        return nn.functional.embedding(x + self.offsets, self.weight)


class LinearTerm(nn.Module):
    """First-order term sum_f w[x_f] + b (LR, and the linear part of FM/DeepFM/xDeepFM)."""

    def __init__(self, vocab_sizes: list[int]):
        super().__init__()
        self.embedding = FieldEmbedding(vocab_sizes, 1, init_std=1e-4)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x).squeeze(-1).sum(1) + self.bias
