"""The inference form of DAGFM / DAGFM+: the same function, laid out for speed.

At inference every DAGFM edge type is a fixed linear map of the previous layer's node states, so
everything that depends only on the weights is derived once (``InferenceCache`` rebuilds it when a
weight changes): the DAG mask is folded into the edge weights, the read-out Linear over the D-sums
becomes one vector per layer over the node states, a batch norm after one of the MLP's Linears is
folded into it. Two layouts, picked by batch size:

* **large batches** (``large``): node states are kept *batch-last* ([F, D, B] for outer/kernel,
  [D, F, B] for inner) so that each edge contraction is a batched matrix product whose long side
  is the batch (its other sides, D and F, are tiny; with the batch as the short side the same
  product ran 4x slower on CPU). The edge maps are the factored ones of the training path (inner
  2F^2D, outer 4F^2D, kernel 2F^2D^2 FLOPs per layer and sample). Where the embedding table is
  small the lookup reads a transposed copy of it, which yields the batch-last layout directly
  (a separate transpose of the looked-up [F, B, D] block cost more than the lookup).
* **small batches** (``small``, batch <= ``small_max``): per-call overhead dominates, so the number
  of operator calls is cut instead: each layer is one dense [W, W] product and one multiply
  (W = F*D + 1 + H), and the read-out (and DAGFM+'s first MLP layer) ride along as extra state
  columns: with h~(t) = [h(t), z(t), u(t)] and the multiplier h~(0) = [h(0), 1, 1],
  h~(t) = h~(0) * (h~(t-1) @ W~(t)) carries z(t) = sum_{s<t} r_s . h(s) (the read-out so far) and
  u(t) = sum_{s<t} W1 h(s) (the MLP's first Linear on the layer sum so far). The dense maps cost
  2 W^2 FLOPs per layer and sample, more than the factored ones, so the small path is taken only
  up to the batch where its extra FLOPs stay below ``SMALL_PATH_FLOPS`` (about the cost of the
  operator calls it saves).
* **small batches of wide models** (``small_factored``, where one dense map alone would cost more
  than ``SMALL_PATH_FLOPS``, e.g. Criteo's F = 39, D = 16): the factored maps again, but as
  broadcast products and sums over [B, F, F, D] blocks instead of batched matrix products, which
  at a batch of one are F matrix-vector calls each (measured 20 us per product at F = 39).

``benchmark-flops`` counts whichever path runs at the batch it measures. ``kdrec export`` exports
the large path alone (one program for every batch size: ``small_batch=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# extra FLOPs per call the dense small path may spend: about the cost of the operator calls it
# saves (~2 per layer, a few microseconds each, at ~50 GFLOP/s on one CPU core)
SMALL_PATH_FLOPS = 2.5e5
# the factored small path materialises [B, F, F, D] products: at most this many elements
SMALL_FACTORED_ELEMENTS = 1 << 17
# tables up to this size are also kept transposed ([D, V]) for the large path's lookup
TRANSPOSED_TABLE_BYTES = 16 << 20


def mlp_layers(mlp: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor, nn.Module | None]]:
    """(weight, bias, activation or None) per Linear of an eval-mode MLP, a batch norm that
    follows a Linear folded into it, dropout left out (the identity in eval mode)."""
    layers: list[list] = []
    for m in mlp:
        if isinstance(m, nn.Linear):
            b = m.bias if m.bias is not None else torch.zeros(m.out_features, device=m.weight.device)
            layers.append([m.weight.detach().clone(), b.detach().clone(), None])
        elif isinstance(m, nn.BatchNorm1d):
            w, b, _ = layers[-1]
            scale = m.weight / torch.sqrt(m.running_var + m.eps)
            layers[-1][0] = w * scale[:, None]
            layers[-1][1] = (b - m.running_mean) * scale + m.bias
        elif isinstance(m, (nn.ReLU, nn.GELU, nn.Tanh)):
            layers[-1][2] = m
    return [(w, b, a) for w, b, a in layers]


def _edge_flops(kind: str, f: int, d: int) -> int:
    """Matrix FLOPs per layer and sample of the factored edge maps."""
    return {"inner": 2 * f * f * d, "outer": 4 * f * f * d, "kernel": 2 * f * f * d * d}[kind]


class DAGFMServing(nn.Module):
    """Inference form of a :class:`~kdrec.models.ctr.dagfm.DAGFM` (or DAGFM+): ``forward(x)``
    equals the model's eval-mode logits, from the weights it had when this was built."""

    def __init__(self, model: nn.Module, small_batch: bool = True):
        super().__init__()
        dag, emb = model.dag, model.embedding
        f, d, depth, kind = dag.num_fields, dag.dim, dag.depth, dag.interaction
        self.kind, self.f, self.d, self.depth = kind, f, d, depth
        n = f * d
        table = emb.weight.detach()
        self.register_buffer("offsets", emb.offsets.clone())
        self.transposed_lookup = table.numel() * table.element_size() <= TRANSPOSED_TABLE_BYTES
        if self.transposed_lookup:
            self.register_buffer("table_t", table.t().contiguous())
        connect = dag.connect.detach()
        self.register_buffer("connect", connect.clone())
        if self.transposed_lookup and kind == "inner":  # h0 [D, F, B] = C @ e [D, F, B], batched over D
            self.register_buffer("connect_d", connect.expand(d, f, f).contiguous())
        # edge maps (DAG mask applied) in the large path's layout, one buffer per layer (an
        # exported program would otherwise spend an operator call per layer selecting it)
        p = dag.p.detach() * (dag.adj[None, :, :, None, None] if kind == "kernel" else dag.adj[None, :, :, None])
        for t in range(depth):
            if kind == "inner":  # agg[d, j, b] = sum_i P[d, j, i] h[d, i, b]
                self.register_buffer(f"edge_p{t}", p[t].permute(2, 1, 0).contiguous())
            elif kind == "outer":  # s[i, j, b] = sum_e P[i, j, e] h[i, e, b]; agg[j, d, b] = sum_i Q[j, d, i] s[i, j, b]
                self.register_buffer(f"edge_p{t}", p[t].contiguous())
                self.register_buffer(f"edge_q{t}", dag.q.detach()[t].permute(1, 2, 0).contiguous())
            else:  # agg[(j, d), b] = sum_(i, e) W[(j, d), (i, e)] h[(i, e), b], W_ij[d, e] = p[i, j, d, e]
                self.register_buffer(f"edge_p{t}", p[t].permute(1, 2, 0, 3).reshape(n, n).contiguous())
        # read-out: logit = b + sum_t sum_j w[t, j] sum_d h_t[j, d] = b + sum_t r_t . h_t
        ro = model.readout.weight.detach().view(depth + 1, f, 1).expand(depth + 1, f, d)  # [t, j, d]
        ro_layout = self._to_layout(ro).reshape(depth + 1, n)
        for t in range(depth + 1):
            self.register_buffer(f"readout{t}", ro_layout[t][None, :].contiguous())  # [1, n]
        self.register_buffer("readout_bias", model.readout.bias.detach().view(1, 1).clone())
        # DAGFM+: the MLP over the layer-summed node states
        mlp = getattr(model, "mlp", None)
        layers = mlp_layers(mlp) if mlp is not None else []
        self.hidden = layers[0][0].shape[0] if layers else 0
        self.acts = [a for _, _, a in layers]
        for k, (w, b, _) in enumerate(layers):
            if k == 0:
                self.register_buffer("mlp_w0_jd", w.clone())  # (j, d) column order
            if k == 0 and kind == "inner":  # its columns follow the large path's (d, j) state order
                w = w.view(-1, f, d).transpose(1, 2).reshape(w.shape[0], n)
            self.register_buffer(f"mlp_w{k}", w.contiguous())
            self.register_buffer(f"mlp_b{k}", b.contiguous())
            self.register_buffer(f"mlp_bcol{k}", b[:, None].clone())  # the batch-last bias
        width = n + 1 + self.hidden
        extra = depth * (2 * width * width - _edge_flops(kind, f, d)) + 2 * n * width - 2 * f * f * d
        self.small_max = int(SMALL_PATH_FLOPS // max(extra, 1)) if small_batch else 0
        self.dense_small = self.small_max > 0
        if small_batch and not self.dense_small and kind != "kernel":
            self.small_max = SMALL_FACTORED_ELEMENTS // (f * f * d)
        if self.small_max or not self.transposed_lookup:
            self.register_buffer("table", table)  # shares the parameter's storage
        if self.dense_small:
            self._build_small(model, layers[0] if layers else None)
        elif self.small_max:  # factored maps in the batch-first [B, F, F, D] broadcast layout
            pm = dag.p.detach() * dag.adj[None, :, :, None]
            self.register_buffer("small_p", pm.contiguous())  # [t, i, j, d]
            if kind == "outer":
                self.register_buffer("small_q", dag.q.detach().contiguous())  # [t, i, j, d]
            self.register_buffer("small_readout", ro.reshape(depth + 1, n).contiguous())  # (j, d) order

    def _to_layout(self, t: torch.Tensor) -> torch.Tensor:
        """[..., F, D] in (j, d) order -> the large path's state order ((d, j) for inner)."""
        return t.transpose(-1, -2) if self.kind == "inner" else t

    def _build_small(self, model, first) -> None:
        f, d, depth, hidden = self.f, self.d, self.depth, self.hidden
        n = f * d
        w = n + 1 + hidden
        dev, dt = self.connect.device, self.connect.dtype
        dag = model.dag
        # dense per-layer maps M_t [(i, e), (j, d)]: agg_flat = h_flat @ M_t
        if self.kind == "inner":  # M[(i, e), (j, d)] = p_ij[d] delta_ed
            m = torch.diag_embed(dag.p.detach() * dag.adj[None, :, :, None]).permute(0, 1, 3, 2, 4)
        elif self.kind == "outer":  # M[(i, e), (j, d)] = p_ij[e] q_ij[d]
            m = torch.einsum("tije,tijd->tiejd", dag.p.detach() * dag.adj[None, :, :, None], dag.q.detach())
        else:  # M[(i, e), (j, d)] = W_ij[d, e]
            m = (dag.p.detach() * dag.adj[None, :, :, None, None]).permute(0, 1, 4, 2, 3)
        ro = model.readout.weight.detach().view(depth + 1, f, 1).expand(depth + 1, f, d).reshape(depth + 1, n)
        w1t = first[0].t() if first is not None else torch.zeros(n, 0, device=dev, dtype=dt)
        eye = torch.eye(1 + hidden, device=dev, dtype=dt)
        # h~(0) = e_flat @ K + beta: [C e, 1, 1_H] with K[(i, e), (j, d)] = C[j, i] delta_ed
        k = torch.zeros(n, w, device=dev, dtype=dt)
        k[:, :n] = torch.kron(self.connect.t().contiguous(), torch.eye(d, device=dev, dtype=dt))
        beta = torch.zeros(w, device=dev, dtype=dt)
        beta[n:] = 1.0
        # W~(t) = [[M_t, r_{t-1}, W1^T], [0, I, 0], [0, 0, I]]; in layer 1 the lower-right block is 0,
        # so that z and u start from 0 (the 1s of h~(0) are the multiplier, not state)
        maps = torch.zeros(depth, w, w, device=dev, dtype=dt)
        maps[:, :n, :n] = m.reshape(depth, n, n)
        maps[:, :n, n] = ro[:depth]
        maps[:, :n, n + 1:] = w1t
        maps[1:, n:, n:] = eye
        # final: [logit, W1 sum_t h(t) + b1] = h~(T) @ [[r_T, W1^T], [I]] + [b, b1]
        final = torch.zeros(w, 1 + hidden, device=dev, dtype=dt)
        final[:n, 0] = ro[depth]
        final[:n, 1:] = w1t
        final[n:] = eye
        bias = model.readout.bias.detach()
        if first is not None:
            bias = torch.cat([bias, first[1]])
        self.register_buffer("small_k", k)
        self.register_buffer("small_beta", beta)
        for t in range(depth):
            self.register_buffer(f"small_map{t}", maps[t].contiguous())
        self.register_buffer("small_final", final[:, 0].contiguous() if not hidden else final)
        self.register_buffer("small_bias", bias.clone())

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.small_max and x.shape[0] <= self.small_max:
            return self.small(x) if self.dense_small else self.small_factored(x)
        return self.large(x)

    def small_factored(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[0], self.f * self.d
        e = F.embedding(x + self.offsets, self.table)  # [B, F, D]
        h0 = torch.matmul(self.connect, e)
        z = torch.addmv(self.readout_bias.view(1), h0.view(b, n), self.small_readout[0])
        total = h0
        h = h0
        for t in range(self.depth):
            if self.kind == "inner":  # agg[b, j, d] = sum_i p[i, j, d] h[b, i, d]
                agg = (self.small_p[t] * h[:, :, None, :]).sum(1)
            else:  # s[b, i, j] = <h[b, i], p[i, j]>; agg[b, j, d] = sum_i s[b, i, j] q[i, j, d]
                s = (self.small_p[t] * h[:, :, None, :]).sum(-1)
                agg = (self.small_q[t] * s[..., None]).sum(1)
            h = agg.mul_(h0)
            z = torch.addmv(z, h.view(b, n), self.small_readout[t + 1])
            if self.hidden:
                total = total + h
        if not self.hidden:
            return z
        a = total.view(b, n)
        for k, act in enumerate(self.acts):
            w = self.mlp_w0_jd if k == 0 else getattr(self, f"mlp_w{k}")
            a = F.linear(a, w, getattr(self, f"mlp_b{k}"))
            if act is not None:
                a = act(a)
        return z + a.squeeze(-1)

    def small(self, x: torch.Tensor) -> torch.Tensor:
        bufs = self._buffers  # plain dict reads: the per-call cost is what this path saves
        e = F.embedding(x + bufs["offsets"], bufs["table"])
        h0 = torch.addmm(bufs["small_beta"], e.view(x.shape[0], -1), bufs["small_k"])  # [B, W]
        h = h0
        for t in range(self.depth):
            h = torch.mm(h, bufs[f"small_map{t}"]).mul_(h0)
        if not self.hidden:
            return torch.addmv(bufs["small_bias"], h, bufs["small_final"])
        y = torch.addmm(bufs["small_bias"], h, bufs["small_final"])  # [B, 1 + H]
        a = y[:, 1:]
        for k, act in enumerate(self.acts):
            if k:
                a = F.linear(a, bufs[f"mlp_w{k}"], bufs[f"mlp_b{k}"])
            if act is not None:
                a = act(a)
        return y[:, 0] + a.squeeze(-1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """h(0) = C e in the large path's layout: [D, F, B] (inner) or [F, D, B]."""
        f, d = self.f, self.d
        b = x.shape[0]
        ids = x.t() + self.offsets[:, None]  # [F, B]
        if self.transposed_lookup:
            e = torch.index_select(self.table_t, 1, ids.reshape(-1)).view(d, f, b)
            if self.kind == "inner":
                return torch.bmm(self.connect_d, e)
            return torch.mm(self.connect, e.transpose(0, 1).reshape(f, d * b)).view(f, d, b)
        e = F.embedding(ids, self.table)  # [F, B, D]
        h0 = torch.mm(self.connect, e.view(f, b * d)).view(f, b, d)
        return h0.permute(2, 0, 1).contiguous() if self.kind == "inner" else h0.transpose(1, 2).contiguous()

    def large(self, x: torch.Tensor) -> torch.Tensor:
        # functional ops only (no out= into a preallocated buffer): torch.export would turn each
        # into a copy of the whole buffer
        f, d, depth = self.f, self.d, self.depth
        n, b = f * d, x.shape[0]
        bufs = self._buffers
        h0 = self.embed(x)
        z = torch.addmm(bufs["readout_bias"], bufs["readout0"], h0.view(n, b))  # [1, B]
        total = h0
        h = h0
        for t in range(depth):
            if self.kind == "inner":
                h = torch.bmm(bufs[f"edge_p{t}"], h).mul_(h0)
            elif self.kind == "outer":
                s = torch.bmm(bufs[f"edge_p{t}"], h).transpose(0, 1).contiguous()  # [Fj, Fi, B]
                h = torch.bmm(bufs[f"edge_q{t}"], s).mul_(h0)
            else:
                h = torch.mm(bufs[f"edge_p{t}"], h.view(n, b)).view(f, d, b).mul_(h0)
            z = torch.addmm(z, bufs[f"readout{t + 1}"], h.view(n, b))
            if self.hidden:
                total = total + h
        if not self.hidden:
            return z.view(b)
        a = total.view(n, b)
        for k, act in enumerate(self.acts):
            a = torch.addmm(bufs[f"mlp_bcol{k}"], bufs[f"mlp_w{k}"], a)
            if act is not None:
                a = act(a)
        return (z + a).view(b)
