from __future__ import annotations

from dataclasses import dataclass

import torch

from kdrec.data.spec import FeatureMap
from kdrec.models.base import CTRModel, CTRModelConfig
from kdrec.models.layers.embedding import LinearTerm
from kdrec.models.registry import register_model


@dataclass
class LRConfig(CTRModelConfig):
    embed_dim: int = 1  # unused by LR's score; kept so it can still share a table if asked


@register_model("lr")
class LR(CTRModel):
    """Logistic regression: sum of per-feature weights."""

    Config = LRConfig

    def __init__(self, feature_map: FeatureMap, cfg: LRConfig):
        super().__init__(feature_map, cfg)
        self.linear = LinearTerm(feature_map.vocab_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
