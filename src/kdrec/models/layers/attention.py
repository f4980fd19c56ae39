"""Multi-head self-attention over fields (AutoInt, Song et al. CIKM 2019), FuxiCTR-style:
queries/keys/values projected to ``attention_dim`` split into heads, optional 1/sqrt(d) scaling,
a residual projection, ReLU, optional layer norm.

How the attention itself runs (:class:`_FieldAttention`, a custom autograd function; same
arithmetic and dtypes as the plain einsum/softmax form, which tracers such as ``torch.export``
still get): with F = 10 fields the score matrices are [F, F] per sample and head, and plain
autograd spent about as long on layout as on the projections' matrix products (profiled on
Frappe_x1 at batch 4096, one thread, bf16: per layer 85 ms of products, 24 ms stacking the q/k/v
gradients, 26 ms softmax and its backward over a last dimension of 10, 13 ms of permute copies).
Here q, k, v are permuted once into [B*H, F, d], scores are kept transposed ([B*H, J, I]) so that
the softmax runs over a non-last dimension (torch vectorises that over the inner axis instead of
rows of 10), and backward writes the q/k/v gradients straight into one buffer.
"""

from __future__ import annotations

import torch
from torch import nn

from kdrec.models.layers.dropout import Dropout, keep_mask


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, F, H*d] (any strides with a unit last one) -> contiguous [B*H, F, d]."""
    b, f, a = x.shape
    return x.reshape(b, f, heads, a // heads).transpose(1, 2).reshape(b * heads, f, a // heads)


class _FieldAttention(torch.autograd.Function):
    """softmax(q k^T * scale) v per sample and head, from the fused projection ``qkv`` [B, F, 3A].
    ``keep``: the scaled dropout keep mask of the attention weights, laid out [B*H, J, I], or None.
    Returns [B, F, A] in ``qkv``'s dtype (bf16 under autocast: scores, softmax and products run in
    that dtype, as autocast runs the einsum form)."""

    @staticmethod
    def forward(ctx, qkv, heads, scale, keep):
        b, f, a3 = qkv.shape
        q, k, v = (_heads(t, heads) for t in qkv.split(a3 // 3, dim=2))
        scores_t = torch.bmm(k, q.transpose(1, 2))  # [B*H, J, I]
        if scale != 1.0:
            scores_t = scores_t * scale
        attn_t = torch.softmax(scores_t, dim=1)
        used = attn_t if keep is None else attn_t * keep
        out = torch.bmm(used.transpose(1, 2), v)  # [B*H, I, d]
        ctx.save_for_backward(q, k, v, attn_t, used, keep)
        ctx.heads, ctx.scale = heads, scale
        return out.view(b, heads, f, -1).transpose(1, 2).reshape(b, f, a3 // 3)

    @staticmethod
    def backward(ctx, g_out):
        q, k, v, attn_t, used, keep = ctx.saved_tensors
        heads, scale = ctx.heads, ctx.scale
        b, f, a = g_out.shape
        go = _heads(g_out.to(v.dtype), heads)  # [B*H, I, d]
        g_v = torch.bmm(used.to(go.dtype), go)  # [B*H, J, d]
        g_attn = torch.bmm(v, go.transpose(1, 2)).to(attn_t.dtype)  # [B*H, J, I]
        if keep is not None:
            g_attn = g_attn * keep
        g_scores = torch.ops.aten._softmax_backward_data(g_attn, attn_t, 1, attn_t.dtype)
        if scale != 1.0:
            g_scores = g_scores * scale
        g_scores = g_scores.to(q.dtype)
        g_q = torch.bmm(g_scores.transpose(1, 2), k)  # [B*H, I, d]
        g_k = torch.bmm(g_scores, q)  # [B*H, J, d]
        g_qkv = torch.empty(b, f, 3, heads, a // heads, dtype=q.dtype, device=q.device)
        for i, g in enumerate((g_q, g_k, g_v)):
            g_qkv[:, :, i].copy_(g.view(b, heads, f, -1).transpose(1, 2))
        return g_qkv.view(b, f, 3 * a), None, None, None


class FieldSelfAttention(nn.Module):
    def __init__(self, in_dim: int, attention_dim: int, num_heads: int, dropout: float = 0.0,
                 use_residual: bool = True, use_scale: bool = True, layer_norm: bool = False):
        super().__init__()
        self.init_args = (in_dim, attention_dim, num_heads, dropout, use_residual, use_scale, layer_norm)
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
        qkv = self.qkv(e)
        if torch.compiler.is_compiling():  # tracers get the plain form
            out = self.plain_attention(qkv)
        else:
            b, f, a3 = qkv.shape
            keep = None
            if self.training and isinstance(self.dropout, Dropout):
                keep = keep_mask(torch.empty(b * self.heads, f, f, dtype=qkv.dtype, device=qkv.device),
                                 self.dropout.p)
            out = _FieldAttention.apply(qkv, self.heads, self.scale, keep)
        if self.residual is not None:
            out = out + self.residual(e)
        return self.norm(torch.relu(out))

    def plain_attention(self, qkv: torch.Tensor) -> torch.Tensor:
        """The attention in plain autograd ops: [B, F, 3A] -> [B, F, A] (the reference form)."""
        b, f, _ = qkv.shape
        q, k, v = qkv.view(b, f, 3, self.heads, self.head_dim).unbind(2)  # [B, F, H, d]
        scores = torch.einsum("bihd,bjhd->bhij", q, k)
        if self.scale != 1.0:
            scores = scores * self.scale
        attn = self.dropout(torch.softmax(scores, dim=-1))
        return torch.einsum("bhij,bjhd->bihd", attn, v).reshape(b, f, -1)
