"""RIM (Qin et al., "Retrieval & Interaction Machine for Tabular Data Prediction", KDD 2021).

For a target row with its K retrieved train rows (field-BM25 over the train pool, see
``kdrec.retrieval``) and their labels:

* embeddings of the target fields t [F, D], of the neighbours' fields [K, F, D] and of their
  labels (a 2-row label table) [K, D];
* attention of the target over the neighbours: a = softmax_k(<W t, n_k>) over the flattened
  [F*D] vectors, masked where fewer than K neighbours exist; the aggregated row representation
  r = sum_k a_k n_k [F, D] and the aggregated label representation l = sum_k a_k label_k [D];
* pairwise inner products over the 2F+1 vectors (t's F fields, r's F fields, l);
* [t, r, pairwise, l] -> BatchNorm -> MLP (200, 80, ReLU, dropout) -> concat l -> logit.

``forward(x, nbr_x, nbr_y)`` takes the neighbours explicitly (``nbr_y`` = -1 marks a missing
one); ``uses_retrieval`` tells the CTR task to serve them (cached once per dataset and retrieval
settings). ``represent`` returns what ROK distils: the aggregated representation [r, l].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from kdrec.data.spec import FeatureMap
from kdrec.errors import ConfigError
from kdrec.models.base import CTRModel, CTRModelConfig
from kdrec.models.layers.mlp import MLP
from kdrec.models.registry import register_model
from kdrec.retrieval.store import retrieval_config


@dataclass
class RIMConfig(CTRModelConfig):
    hidden: list[int] = field(default_factory=lambda: [200, 80])
    dropout: float = 0.2  # RIM's keep_prob 0.8
    input_batch_norm: bool = True
    retrieval: dict = field(default_factory=dict)  # RetrievalConfig fields (k, query_fields, ...)


@register_model("rim")
class RIM(CTRModel):
    Config = RIMConfig
    uses_retrieval = True

    def __init__(self, feature_map: FeatureMap, cfg: RIMConfig):
        super().__init__(feature_map, cfg)
        self.retrieval_config = retrieval_config(cfg.retrieval)
        F, D = feature_map.num_fields, cfg.embed_dim
        self.label_embedding = nn.Embedding(2, D)
        nn.init.normal_(self.label_embedding.weight, std=1e-4)
        self.attn_query = nn.Linear(F * D, F * D)
        n_vec = 2 * F + 1
        iu = torch.triu_indices(n_vec, n_vec, offset=1)
        self.register_buffer("pair_i", iu[0], persistent=False)
        self.register_buffer("pair_j", iu[1], persistent=False)
        in_dim = 2 * F * D + iu.shape[1] + D
        self.input_bn = nn.BatchNorm1d(in_dim) if cfg.input_batch_norm else nn.Identity()
        self.mlp = MLP(in_dim, cfg.hidden, cfg.dropout)
        self.out = nn.Linear(self.mlp.out_dim + D, 1)
        self.repr_dim = (F + 1) * D

    def aggregate(self, x, nbr_x, nbr_y):
        """(target [B, F, D], aggregated rows [B, F, D], aggregated label [B, D])."""
        B, F = x.shape
        t = self.embedding(x)
        n = self.embedding(nbr_x.reshape(-1, F)).reshape(B, nbr_x.shape[1], -1)  # [B, K, F*D]
        mask = nbr_y >= 0
        att = (n * self.attn_query(t.flatten(1))[:, None, :]).sum(-1)  # [B, K]
        att = torch.softmax(att.masked_fill(~mask, -1e9), dim=1) * mask  # no neighbour -> zeros
        r = (att[:, :, None] * n).sum(1).view_as(t)
        lab = self.label_embedding(nbr_y.clamp_min(0).long())  # [B, K, D]
        lbl = (att[:, :, None] * lab).sum(1)
        return t, r, lbl

    def forward(self, x: torch.Tensor, nbr_x: torch.Tensor | None = None,
                nbr_y: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_hidden(x, nbr_x, nbr_y)[0]

    def forward_hidden(self, x, nbr_x, nbr_y):
        if nbr_x is None or nbr_y is None:
            raise ConfigError("rim needs its retrieved neighbours: call it through the CTR task "
                              "(task.model_inputs) or as model(x, nbr_x, nbr_y)")
        t, r, lbl = self.aggregate(x, nbr_x, nbr_y)
        v = torch.cat([t, r, lbl[:, None, :]], 1)  # [B, 2F+1, D]
        gram = v @ v.transpose(1, 2)
        pairs = gram[:, self.pair_i, self.pair_j]
        h = self.mlp(self.input_bn(torch.cat([t.flatten(1), r.flatten(1), pairs, lbl], 1)))
        return self.out(torch.cat([h, lbl], 1)).squeeze(-1), h, torch.cat([r.flatten(1), lbl], 1)

    def represent(self, x, nbr_x, nbr_y, kind: str = "aggregated") -> torch.Tensor:
        """What ROK distils: ``aggregated`` = [r, l] ((F+1)*D) or ``hidden`` = the last MLP layer."""
        _, h, agg = self.forward_hidden(x, nbr_x, nbr_y)
        if kind == "aggregated":
            return agg
        if kind == "hidden":
            return h
        raise ConfigError(f"distiller.knowledge must be 'aggregated' or 'hidden', not {kind!r}")

    def repr_size(self, kind: str) -> int:
        return self.repr_dim if kind == "aggregated" else self.mlp.out_dim

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        raise ConfigError("rim scores a row with its retrieved neighbours; it has no score(x, e)")
