"""Dropout with the same law as ``nn.Dropout`` (keep with probability 1-p, scale by 1/(1-p)).

On CPU, torch's ``bernoulli_`` kernel is about 3x slower than drawing uniforms and comparing, and
it was a quarter of a DCNv2 training step on Frappe_x1 (profiled by scripts/bench_peers.py), so
CPU tensors take the uniform path; CUDA tensors keep the fused ``F.dropout`` kernel."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Dropout(nn.Module):
    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.is_cuda:
            return F.dropout(x, self.p, training=True)
        return x * ((torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p)))

    def extra_repr(self) -> str:
        return f"p={self.p}"
