from __future__ import annotations

from dataclasses import dataclass

import torch

from kdrec.data.spec import FeatureMap
from kdrec.models.base import CTRModel, CTRModelConfig
from kdrec.models.layers.embedding import LinearTerm
from kdrec.models.registry import register_model


def fm_pairwise(e: torch.Tensor) -> torch.Tensor:
    """sum_{i<j} <e_i, e_j> in O(F D): 0.5 * ((sum e)^2 - sum e^2), summed over D. e: [B, F, D]."""
    s = e.sum(1)
    return 0.5 * (s * s - (e * e).sum(1)).sum(-1)


@dataclass
class FMConfig(CTRModelConfig):
    pass


@register_model("fm")
class FM(CTRModel):
    """Factorization machine (Rendle 2010): linear term + all pairwise inner products."""

    Config = FMConfig

    def __init__(self, feature_map: FeatureMap, cfg: FMConfig):
        super().__init__(feature_map, cfg)
        self.linear = LinearTerm(feature_map.vocab_sizes)

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + fm_pairwise(e)
