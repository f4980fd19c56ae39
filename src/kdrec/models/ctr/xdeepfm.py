"""CIN and xDeepFM teachers (Lian et al., KDD 2018), FuxiCTR/BARS-style:
logit = [linear term] + Linear(CIN pooled maps) + [DNN over the flattened embeddings]."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from kdrec.data.spec import FeatureMap
from kdrec.models.base import CTRModel, CTRModelConfig
from kdrec.models.layers.cin import CIN
from kdrec.models.layers.embedding import LinearTerm
from kdrec.models.layers.mlp import MLP
from kdrec.models.registry import register_model


@dataclass
class XDeepFMConfig(CTRModelConfig):
    cin_layers: list[int] = field(default_factory=lambda: [64])
    dnn_hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    dropout: float = 0.2
    batch_norm: bool = True
    use_linear: bool = True


@register_model("xdeepfm")
class XDeepFM(CTRModel):
    Config = XDeepFMConfig

    def __init__(self, feature_map: FeatureMap, cfg: XDeepFMConfig):
        super().__init__(feature_map, cfg)
        f, d = feature_map.num_fields, cfg.embed_dim
        self.linear = LinearTerm(feature_map.vocab_sizes) if cfg.use_linear else None
        self.cin = CIN(f, cfg.cin_layers)
        self.cin_out = nn.Linear(self.cin.out_dim, 1)
        self.dnn = (MLP(f * d, cfg.dnn_hidden, cfg.dropout, cfg.batch_norm, out_dim=1)
                    if cfg.dnn_hidden else None)

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        z = self.cin_out(self.cin(e)).squeeze(-1)
        if self.dnn is not None:
            z = z + self.dnn(e.flatten(1)).squeeze(-1)
        if self.linear is not None:
            z = z + self.linear(x)
        return z


@dataclass
class CINConfig(XDeepFMConfig):
    cin_layers: list[int] = field(default_factory=lambda: [64, 64, 64])
    dnn_hidden: list[int] = field(default_factory=list)
    dropout: float = 0.0


@register_model("cin")
class CINModel(XDeepFM):
    """xDeepFM without its DNN: explicit interactions only (the paper's CIN teacher)."""

    Config = CINConfig
