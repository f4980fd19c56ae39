"""Multi-head self-attention over fields (AutoInt, Song et al. CIKM 2019), FuxiCTR-style:
queries/keys/values projected to ``attention_dim`` split into heads, optional 1/sqrt(d) scaling,
a residual projection, ReLU, optional layer norm."""

from __future__ import annotations

import torch
from torch import nn

from kdrec.models.layers.dropout import Dropout


class FieldSelfAttention(nn.Module):
    def __init__(self, in_dim: int, attention_dim: int, num_heads: int, dropout: float = 0.0,
                 use_residual: bool = True, use_scale: bool = True, layer_norm: bool = False):
        super().__init__()
        if attention_dim % num_heads:
            raise ValueError(f"attention_dim {attention_dim} not divisible by num_heads {num_heads}")
        self.heads, self.head_dim = num_heads, attention_dim // num_heads
        self.qkv = nn.Linear(in_dim, 3 * attention_dim, bias=False)
        self.residual = nn.Linear(in_dim, attention_dim, bias=False) if use_residual else None
        self.scale = self.head_dim ** -0.5 if use_scale else 1.0
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm = nn.LayerNorm(attention_dim) if layer_norm else nn.Identity()

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """e: [B, F, in_dim] -> [B, F, attention_dim]."""
        b, f, _ = e.shape
        q, k, v = self.qkv(e).view(b, f, 3, self.heads, self.head_dim).unbind(2)  # [B, F, H, d]
        scores = torch.einsum("bihd,bjhd->bhij", q, k)
        if self.scale != 1.0:
            scores = scores * self.scale
        attn = self.dropout(torch.softmax(scores, dim=-1))
        out = torch.einsum("bhij,bjhd->bihd", attn, v).reshape(b, f, -1)
        if self.residual is not None:
            out = out + self.residual(e)
        return self.norm(torch.relu(out))
