"""The DAG interaction of DAGFM (Tian et al., WSDM 2023, arXiv 2211.11159).

Fields are nodes of a fixed upper-triangular DAG: field i feeds field j for every i <= j
(self-loops included). A learnable F x F connection matrix C (initialised to the identity) first
mixes the embeddings, e' = C E. With h(0) = e', layer t computes for every node j

    h_j(t) = e'_j * sum_{i <= j} edge_ij(h_i(t-1))

where the edge function is
  * ``inner``  - elementwise weights:   edge_ij(h) = p_ij * h            (p: [F, F, D])
  * ``outer``  - rank-one map:          edge_ij(h) = <h, p_ij> q_ij      (p, q: [F, F, D])
  * ``kernel`` - full matrix:           edge_ij(h) = W_ij h              (W: [F, F, D, D])
(``kernel`` is described in the paper but absent from the official code.) All node states of all
layers, layer 0 included, are returned: [B, T+1, F, D]. The mask is applied to the weights, so
every layer is one einsum over all fields at once.

Edge weights start as in the official ``Model/DAGFM.py``: inner p ~ N(0, 1)
(``torch.randn``, no re-initialisation), outer p and q xavier-normal with gain 1.414 per layer;
kernel (not in the official code) xavier-normal with gain 1.414. (kdrec's earlier xavier-normal
inner init, which the official DeepDAGFM uses, was not better over 3 seeds in KD-DAGFM(+) on
Frappe: AUC -0.0002 on xDeepFM, +0.0002 on CIN, p >= 0.06, and was removed.)
This module is the training path; :mod:`kdrec.models.ctr.dagfm_serving` builds the inference form.
"""

from __future__ import annotations

import torch
from torch import nn

INTERACTIONS = ("inner", "outer", "kernel")


class DAGInteraction(nn.Module):
    def __init__(self, num_fields: int, dim: int, depth: int = 3, interaction: str = "inner"):
        super().__init__()
        if interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, not {interaction!r}")
        self.num_fields, self.dim, self.depth, self.interaction = num_fields, dim, depth, interaction
        f, d = num_fields, dim
        self.connect = nn.Parameter(torch.eye(f))
        # adj[i, j] = 1 for i <= j: node i feeds node j (upper triangle incl. the diagonal)
        self.register_buffer("adj", torch.ones(f, f).triu(), persistent=False)
        shape = (depth, f, f, d, d) if interaction == "kernel" else (depth, f, f, d)
        self.p = nn.Parameter(torch.empty(shape))
        self.q = nn.Parameter(torch.empty(depth, f, f, d)) if interaction == "outer" else None
        with torch.no_grad():
            for t in range(depth):
                if interaction == "inner":
                    nn.init.normal_(self.p[t])  # the official torch.randn(F, F, D)
                else:
                    nn.init.xavier_normal_(self.p[t], gain=1.414)
                if self.q is not None:
                    nn.init.xavier_normal_(self.q[t], gain=1.414)

    def masked(self, w: torch.Tensor) -> torch.Tensor:
        """Zero the weights of edges that are not in the DAG (i > j)."""
        extra = w.dim() - 2
        return w * self.adj.reshape(*self.adj.shape, *([1] * extra))

    def forward(self, e: torch.Tensor) -> list[torch.Tensor]:
        """e: [B, F, D] -> node states of every layer, layer 0 included: T+1 tensors [B, F, D].

        Each edge type keeps its states in the layout where its contraction is one plain batched
        matmul (inner: [D, B, F], outer: [F, B, D], kernel: [B, F*D]); the returned tensors are
        views in [B, F, D]. Same arithmetic as the einsum form, without per-layer layout copies."""
        b, f, d = e.shape
        c = self.connect
        states = []
        if self.interaction == "inner":
            h0 = torch.matmul(e.permute(2, 0, 1), c.t())  # [D, B, F]: e'_j = sum_i C_ji e_i
            h = h0
            for t in range(self.depth):
                h = h0 * torch.bmm(h, self.masked(self.p[t]).permute(2, 0, 1))  # [D,B,Fi]@[D,Fi,Fj]
                states.append(h)
            return [s.permute(1, 2, 0) for s in [h0, *states]]
        if self.interaction == "outer":
            h0 = torch.matmul(c, e.transpose(0, 1).reshape(f, b * d)).view(f, b, d)  # [F, B, D]
            h = h0
            for t in range(self.depth):
                s = torch.bmm(h, self.masked(self.p[t]).transpose(1, 2))  # [Fi,B,D]@[Fi,D,Fj]: <h_i, p_ij>
                agg = torch.bmm(s.permute(2, 1, 0), self.q[t].transpose(0, 1))  # [Fj,B,Fi]@[Fj,Fi,D]
                h = h0 * agg
                states.append(h)
            return [s.transpose(0, 1) for s in [h0, *states]]
        h0 = torch.matmul(c, e).reshape(b, f * d)  # [B, F*D]
        h = h0
        for t in range(self.depth):
            w = self.masked(self.p[t]).permute(0, 3, 1, 2).reshape(f * d, f * d)  # [(i,e), (j,d)]
            h = h0 * (h @ w)
            states.append(h)
        return [s.view(b, f, d) for s in [h0, *states]]
