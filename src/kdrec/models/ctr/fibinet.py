"""FiBiNET (Huang et al., RecSys 2019), FuxiCTR/BARS-style: SENET re-weighting of the field
embeddings, bilinear interactions (v_i W) * v_j over all pairs i < j of both the raw and the
re-weighted embeddings, a DNN over both, plus the linear term."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from kdrec.data.spec import FeatureMap
from kdrec.errors import ConfigError
from kdrec.models.base import CTRModel, CTRModelConfig
from kdrec.models.layers.embedding import LinearTerm
from kdrec.models.layers.mlp import MLP
from kdrec.models.registry import register_model

BILINEAR = ("field_all", "field_each", "field_interaction")


class SENet(nn.Module):
    def __init__(self, num_fields: int, reduction_ratio: float):
        super().__init__()
        r = max(1, int(num_fields / reduction_ratio))
        self.excite = nn.Sequential(nn.Linear(num_fields, r, bias=False), nn.ReLU(),
                                    nn.Linear(r, num_fields, bias=False), nn.ReLU())

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return e * self.excite(e.mean(-1)).unsqueeze(-1)


class Bilinear(nn.Module):
    """p_ij = (v_i W) * v_j for i < j; W shared (field_all), per field i (field_each) or per pair."""

    def __init__(self, num_fields: int, dim: int, kind: str):
        super().__init__()
        i, j = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("i", i, persistent=False)
        self.register_buffer("j", j, persistent=False)
        self.kind = kind
        n = {"field_all": 1, "field_each": num_fields, "field_interaction": len(i)}[kind]
        self.W = nn.Parameter(torch.empty(n, dim, dim))
        nn.init.xavier_normal_(self.W)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        vi, vj = e[:, self.i], e[:, self.j]  # [B, P, D]
        if self.kind == "field_all":
            vw = vi @ self.W[0]
        elif self.kind == "field_each":
            vw = torch.einsum("bpd,pde->bpe", vi, self.W[self.i])
        else:
            vw = torch.einsum("bpd,pde->bpe", vi, self.W)
        return vw * vj


@dataclass
class FiBiNETConfig(CTRModelConfig):
    reduction_ratio: float = 2.0
    bilinear_type: str = "field_all"
    hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    dropout: float = 0.3
    batch_norm: bool = True


@register_model("fibinet")
class FiBiNET(CTRModel):
    Config = FiBiNETConfig

    def __init__(self, feature_map: FeatureMap, cfg: FiBiNETConfig):
        super().__init__(feature_map, cfg)
        if cfg.bilinear_type not in BILINEAR:
            raise ConfigError(f"fibinet.bilinear_type must be one of {BILINEAR}, not {cfg.bilinear_type!r}")
        f, d = feature_map.num_fields, cfg.embed_dim
        self.senet = SENet(f, cfg.reduction_ratio)
        self.bilinear = Bilinear(f, d, cfg.bilinear_type)
        pairs = f * (f - 1) // 2
        self.dnn = MLP(2 * pairs * d, cfg.hidden, cfg.dropout, cfg.batch_norm, out_dim=1)
        self.linear = LinearTerm(feature_map.vocab_sizes)

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        p = self.bilinear(e)
        q = self.bilinear(self.senet(e))
        return self.dnn(torch.cat([p, q], dim=1).flatten(1)).squeeze(-1) + self.linear(x)
