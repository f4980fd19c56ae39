"""CrossNet and DCN-V2 teachers (Wang et al., WWW 2021), FuxiCTR/BARS-style.

``structure``: ``crossnet_only`` (logit = Linear(cross(x0))), ``parallel``
(Linear([cross(x0), dnn(x0)])) or ``stacked`` (Linear(dnn(cross(x0)))). ``low_rank_mixture``
swaps the full-rank cross layers for the low-rank mixture of experts."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from kdrec.data.spec import FeatureMap
from kdrec.errors import ConfigError
from kdrec.models.base import CTRModel, CTRModelConfig
from kdrec.models.layers.crossnet import CrossNetMix, CrossNetV2
from kdrec.models.layers.mlp import MLP
from kdrec.models.registry import register_model

STRUCTURES = ("crossnet_only", "parallel", "stacked")


@dataclass
class DCNv2Config(CTRModelConfig):
    structure: str = "parallel"
    cross_layers: int = 4
    low_rank_mixture: bool = False
    low_rank: int = 32
    num_experts: int = 4
    dnn_hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    dropout: float = 0.4
    batch_norm: bool = True


@register_model("dcnv2")
class DCNv2(CTRModel):
    Config = DCNv2Config

    def __init__(self, feature_map: FeatureMap, cfg: DCNv2Config):
        super().__init__(feature_map, cfg)
        if cfg.structure not in STRUCTURES:
            raise ConfigError(f"{self.registry_name}.structure must be one of {STRUCTURES}, "
                              f"not {cfg.structure!r}")
        n = feature_map.num_fields * cfg.embed_dim
        self.cross = (CrossNetMix(n, cfg.cross_layers, cfg.low_rank, cfg.num_experts)
                      if cfg.low_rank_mixture else CrossNetV2(n, cfg.cross_layers))
        self.dnn = None
        out = n
        if cfg.structure != "crossnet_only":
            self.dnn = MLP(n, cfg.dnn_hidden, cfg.dropout, cfg.batch_norm)
            out = n + self.dnn.out_dim if cfg.structure == "parallel" else self.dnn.out_dim
        self.fc = nn.Linear(out, 1)

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        x0 = e.flatten(1)
        c = self.cross(x0)
        if self.cfg.structure == "parallel":
            c = torch.cat([c, self.dnn(x0)], dim=1)
        elif self.cfg.structure == "stacked":
            c = self.dnn(c)
        return self.fc(c).squeeze(-1)


@dataclass
class CrossNetConfig(DCNv2Config):
    structure: str = "crossnet_only"
    dropout: float = 0.0
    batch_norm: bool = False


@register_model("crossnet")
class CrossNet(DCNv2):
    """DCN-V2's cross network alone: explicit bounded-degree interactions (the paper's teacher)."""

    Config = CrossNetConfig
