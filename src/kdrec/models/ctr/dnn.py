from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kdrec.data.spec import FeatureMap
from kdrec.models.base import CTRModel, CTRModelConfig
from kdrec.models.layers.mlp import MLP
from kdrec.models.registry import register_model


@dataclass
class DNNConfig(CTRModelConfig):
    hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    dropout: float = 0.0
    batch_norm: bool = False


@register_model("dnn")
class DNN(CTRModel):
    """Concatenated field embeddings -> MLP -> logit (BARS' DNN)."""

    Config = DNNConfig

    def __init__(self, feature_map: FeatureMap, cfg: DNNConfig):
        super().__init__(feature_map, cfg)
        in_dim = feature_map.num_fields * cfg.embed_dim
        self.mlp = MLP(in_dim, cfg.hidden, cfg.dropout, cfg.batch_norm, out_dim=1)

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.mlp(e.flatten(1)).squeeze(-1)
