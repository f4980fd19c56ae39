"""DeepFM (Guo et al., IJCAI 2017): linear term + FM pairwise term + DNN, sharing one embedding."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kdrec.data.spec import FeatureMap
from kdrec.models.base import CTRModel, CTRModelConfig
from kdrec.models.ctr.fm import fm_pairwise
from kdrec.models.layers.embedding import LinearTerm
from kdrec.models.layers.mlp import MLP
from kdrec.models.registry import register_model


@dataclass
class DeepFMConfig(CTRModelConfig):
    hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    dropout: float = 0.2
    batch_norm: bool = True


@register_model("deepfm")
class DeepFM(CTRModel):
    Config = DeepFMConfig

    def __init__(self, feature_map: FeatureMap, cfg: DeepFMConfig):
        super().__init__(feature_map, cfg)
        self.linear = LinearTerm(feature_map.vocab_sizes)
        self.dnn = MLP(feature_map.num_fields * cfg.embed_dim, cfg.hidden, cfg.dropout,
                       cfg.batch_norm, out_dim=1)

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + fm_pairwise(e) + self.dnn(e.flatten(1)).squeeze(-1)
