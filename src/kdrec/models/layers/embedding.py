"""One embedding table for all fields, addressed by per-field offsets (torchrec's EmbeddingBag idea,
kept simple): teacher and student can share the very same module."""

from __future__ import annotations

import math

import torch
from torch import nn

from kdrec.errors import ConfigError

INITS = ("normal", "xavier")


class FieldEmbedding(nn.Module):
    def __init__(self, vocab_sizes: list[int], dim: int, init_std: float = 1e-4, init: str = "normal"):
        super().__init__()
        if init not in INITS:
            raise ConfigError(f"embed_init must be one of {INITS}, not {init!r}")
        self.vocab_sizes = list(vocab_sizes)
        self.dim = dim
        offsets = torch.tensor([0, *vocab_sizes[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.weight = nn.Parameter(torch.empty(sum(vocab_sizes), dim))
        if init == "normal":
            nn.init.normal_(self.weight, std=init_std)
        else:  # xavier-uniform of each field's own [V_f, dim] table
            bound = torch.tensor([math.sqrt(6.0 / (v + dim)) for v in self.vocab_sizes])
            bound = bound.repeat_interleave(torch.tensor(self.vocab_sizes))[:, None]
            with torch.no_grad():
                self.weight.uniform_(-1.0, 1.0).mul_(bound)

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
