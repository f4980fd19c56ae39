"""Compressed Interaction Network (xDeepFM, Lian et al. KDD 2018).

Layer k maps the previous feature maps X^{k-1} [B, H_{k-1}, D] and the field embeddings
X^0 [B, F, D] to X^k [B, H_k, D] with
    X^k_{h,:} = sum_{i,j} W^k_{h,i,j} (X^{k-1}_{i,:} * X^0_{j,:}) + b^k_h
i.e. an outer product over the field axes, elementwise along D, compressed by a 1x1 convolution
(a [H_k, H_{k-1} F] matrix over the (i, j) pair axis). Each layer's maps are sum-pooled over D and
the pooled vectors of all layers are concatenated: [B, sum_k H_k].

How it is computed (same arithmetic, a different schedule): the outer product Z is the large
object, B*D rows x H_{k-1}*F values (26 M at batch 4096 for CIN(64x3) on Frappe); materialising
it for the whole batch made every elementwise pass (building Z, and in backward the two
reductions of dZ) a trip through main memory, and with rows of only F = 10 contiguous values those
passes ran at ~2.5 ns per element: two thirds of a training step. So the maps are kept
*row-last* ([H, R], R = B*D rows, each map a long contiguous vector) and the whole network runs
over chunks of rows small enough for Z to stay in the CPU cache; backward rebuilds each chunk's Z
from the saved layer inputs instead of storing it (:class:`_ChunkedCIN`, a custom autograd
function). Under CPU autocast (bf16) the products run in bf16 like autocast's own matmuls, with Z
formed in fp32 and rounded once, as before; the maps, pooling and gradients stay fp32.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# bytes of one chunk's outer product Z (fp32): about one core's L2 cache (measured on Frappe,
# CIN(64x3), batch 4096, one thread: 256 KB 442 ms per step, 1 MB 245 ms, 4 MB 229 ms in bf16 and
# 417 / 312 / 371 ms in fp32, against 823 / 863 ms unchunked)
CHUNK_BYTES = 1 << 20
# ...but never fewer rows than this, so that the matrix products keep a useful width
MIN_CHUNK_ROWS = 256


def _compute_dtype(ref: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run a matmul of ``ref`` in (``ref``'s own outside autocast)."""
    kind = ref.device.type
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else ref.dtype
    if kind == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else ref.dtype
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else ref.dtype


def _outer(x: torch.Tensor, e0: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Z [H*F, c] from x [H, c] and e0 [F, c]: Z[(i, j), r] = x[i, r] * e0[j, r]."""
    z = (x[:, None, :] * e0[None, :, :]).view(-1, x.shape[1])
    return z if z.dtype == dtype else z.to(dtype)


class _ChunkedCIN(torch.autograd.Function):
    """All CIN layers over row chunks. Inputs: e0 [F, R] (rows r = b*D + d), D, chunk rows, the
    compute dtype, then the weights [H_k, H_{k-1} F] and biases [H_k] of every layer.
    Output: pooled maps [sum_k H_k, B] (fp32, or e0's dtype)."""

    @staticmethod
    def forward(ctx, e0, dim, chunk, dtype, *params):
        weights, biases = params[0::2], params[1::2]
        f, rows = e0.shape
        b = rows // dim
        ws = [w.to(dtype) for w in weights]
        maps = [torch.empty(w.shape[0], rows, dtype=e0.dtype, device=e0.device) for w in weights]
        pooled = torch.empty(sum(w.shape[0] for w in weights), b, dtype=e0.dtype, device=e0.device)
        for start in range(0, rows, chunk):
            stop = min(start + chunk, rows)
            e0c = e0[:, start:stop]
            x = e0c
            top = 0
            for w, bias, out in zip(ws, biases, maps):
                y = torch.mm(w, _outer(x, e0c, dtype))
                x = torch.add(y, bias[:, None], out=out[:, start:stop]) if y.dtype == out.dtype else \
                    out[:, start:stop].copy_(y).add_(bias[:, None])
                h = x.shape[0]
                torch.sum(x.view(h, -1, dim), 2, out=pooled[top:top + h, start // dim:stop // dim])
                top += h
        ctx.dim, ctx.chunk, ctx.dtype = dim, chunk, dtype
        ctx.save_for_backward(e0, *maps[:-1], *weights)
        ctx.n_layers = len(weights)
        return pooled

    @staticmethod
    def backward(ctx, g_pooled):
        n = ctx.n_layers
        e0, maps, weights = ctx.saved_tensors[0], ctx.saved_tensors[1:n], ctx.saved_tensors[n:]
        dim, chunk, dtype = ctx.dim, ctx.chunk, ctx.dtype
        f, rows = e0.shape
        ws = [w.to(dtype) for w in weights]
        g_w = [torch.zeros_like(w, dtype=torch.float32) for w in weights]
        g_b = [torch.zeros(w.shape[0], dtype=torch.float32, device=w.device) for w in weights]
        g_e0 = torch.empty_like(e0)
        sizes = [w.shape[0] for w in weights]
        offsets = [0, *torch.tensor(sizes).cumsum(0).tolist()]
        g_pooled = g_pooled.to(e0.dtype)
        for start in range(0, rows, chunk):
            stop = min(start + chunk, rows)
            cols = stop - start
            e0c = e0[:, start:stop]
            inputs = [e0c, *(m[:, start:stop] for m in maps)]
            g_e0c = torch.zeros(f, cols, dtype=e0.dtype, device=e0.device)
            g_x = None
            for k in range(n - 1, -1, -1):
                h = sizes[k]
                # gradient of layer k's maps: from its pooling (broadcast over D) and from layer k+1
                g = g_pooled[offsets[k]:offsets[k + 1], start // dim:stop // dim, None].expand(h, cols // dim, dim)
                g = g.reshape(h, cols) if g_x is None else g_x.view(h, cols // dim, dim).add_(g).view(h, cols)
                x = inputs[k]
                z = _outer(x, e0c, dtype)
                gd = g.to(dtype)
                g_w[k] += torch.mm(gd, z.t()).float()
                g_b[k] += g.sum(1)
                gz = torch.mm(ws[k].t(), gd).view(x.shape[0], f, cols)  # [H_{k-1}, F, c]
                if gz.dtype != e0.dtype:
                    gz = gz.to(e0.dtype)
                g_e0c += (gz * x[:, None, :]).sum(0)
                g_x = (gz * e0c[None, :, :]).sum(1)  # [H_{k-1}, c]
            g_e0c += g_x  # layer 1's input is e0 itself
            g_e0[:, start:stop] = g_e0c
        grads: list = [g_e0, None, None, None]
        for gw, gb, w in zip(g_w, g_b, weights):
            grads += [gw.to(w.dtype), gb.to(w.dtype)]
        return tuple(grads)


class CIN(nn.Module):
    def __init__(self, num_fields: int, layer_sizes: list[int]):
        super().__init__()
        self.num_fields = num_fields
        self.layer_sizes = list(layer_sizes)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        prev = num_fields
        for h in self.layer_sizes:
            w = torch.empty(h, prev * num_fields)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # nn.Conv1d's default init
            self.weights.append(nn.Parameter(w))
            bound = 1.0 / math.sqrt(prev * num_fields)
            self.biases.append(nn.Parameter(torch.empty(h).uniform_(-bound, bound)))
            prev = h
        self.out_dim = sum(self.layer_sizes)

    def chunk_rows(self, dim: int) -> int:
        """Rows per chunk: whole samples (multiples of D) with Z of about CHUNK_BYTES."""
        widest = max([self.num_fields, *self.layer_sizes[:-1]]) * self.num_fields
        samples = max(CHUNK_BYTES // (4 * widest * dim), -(-MIN_CHUNK_ROWS // dim))
        return samples * dim

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """e: [B, F, D] -> pooled feature maps [B, sum(layer_sizes)]."""
        b, f, d = e.shape
        e0 = e.transpose(1, 2).reshape(b * d, f).t().contiguous()  # [F, R], rows r = b*D + d
        if torch.compiler.is_compiling():  # a tracer cannot unroll a loop over a symbolic batch
            return self.unchunked(e0, d).t()
        params = [p for pair in zip(self.weights, self.biases) for p in pair]
        pooled = _ChunkedCIN.apply(e0, d, self.chunk_rows(d), _compute_dtype(e), *params)
        return pooled.t()

    def unchunked(self, e0: torch.Tensor, dim: int) -> torch.Tensor:
        """The same network in one pass over all rows (for tracers such as torch.export)."""
        x = e0
        pooled = []
        for w, bias in zip(self.weights, self.biases):
            x = torch.addmm(bias[:, None], w, (x[:, None, :] * e0[None, :, :]).flatten(0, 1))
            pooled.append(x.unflatten(1, (-1, dim)).sum(2))
        return torch.cat(pooled, 0)
