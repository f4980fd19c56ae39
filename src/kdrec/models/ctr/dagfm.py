"""DAGFM and DAGFM+ students (Tian et al., WSDM 2023).

DAGFM: the DAG interaction (:mod:`kdrec.models.layers.dag`) gives node states h(t) for
t = 0..T; each is summed over the embedding axis and the F(T+1) values feed one linear read-out.
DAGFM+ adds a small MLP over the layer-summed node states sum_t h(t) (flattened) for implicit
interactions; its logit is added to the read-out (the official code defines such a DeepDAGFM but
never wires it into KD; here ``kd_dagfm_plus`` uses it).

In eval mode without autograd (evaluation, serving, benchmarks) ``forward`` runs the inference
form (:mod:`kdrec.models.ctr.dagfm_serving`), derived from the weights once and rebuilt when they
change; training, and any call with autograd on, runs ``score`` below."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from kdrec.data.spec import FeatureMap
from kdrec.errors import ConfigError
from kdrec.models.base import CTRModel, CTRModelConfig
from kdrec.models.ctr.dagfm_serving import DAGFMServing
from kdrec.models.layers.dag import INTERACTIONS, DAGInteraction
from kdrec.models.layers.inference_cache import InferenceCache, serving_mode
from kdrec.models.layers.mlp import MLP
from kdrec.models.registry import register_model


def pool(states: list[torch.Tensor]) -> torch.Tensor:
    """Sum every layer's node states over D and concatenate: [B, F(T+1)] (layer-major)."""
    return torch.cat([h.sum(-1) for h in states], dim=1)


@dataclass
class DAGFMConfig(CTRModelConfig):
    interaction: str = "inner"
    depth: int = 3
    RETIRED: ClassVar[dict] = {"edge_init": ("official", "kdrec's xavier inner-edge init was not better "
                                             "over 3 seeds, docs/kd_dagfm.md")}


@register_model("dagfm")
class DAGFM(CTRModel):
    Config = DAGFMConfig

    def __init__(self, feature_map: FeatureMap, cfg: DAGFMConfig):
        super().__init__(feature_map, cfg)
        if cfg.interaction not in INTERACTIONS:
            raise ConfigError(f"{self.registry_name}.interaction must be one of {INTERACTIONS}, "
                              f"not {cfg.interaction!r}")
        if cfg.depth < 1:
            raise ConfigError(f"{self.registry_name}.depth must be >= 1, not {cfg.depth}")
        f = feature_map.num_fields
        self.dag = DAGInteraction(f, cfg.embed_dim, cfg.depth, cfg.interaction)
        self.readout = nn.Linear(f * (cfg.depth + 1), 1)
        self._serving = InferenceCache(DAGFMServing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if serving_mode(self):
            return self._serving.get(self).forward(x)  # no hooks on it: skip Module.__call__
        return self.score(x, self.embedding(x))

    def serving_module(self, small_batch: bool = True) -> DAGFMServing:
        """A standalone inference module with this model's current weights (what `kdrec export`
        exports, with ``small_batch=False``: one program for every batch size)."""
        with torch.no_grad():
            return DAGFMServing(self, small_batch=small_batch)

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        states = self.dag(e)  # T+1 node-state tensors [B, F, D]
        return self.readout(pool(states)).squeeze(-1)


@dataclass
class DAGFMPlusConfig(DAGFMConfig):
    mlp_hidden: list[int] = field(default_factory=lambda: [64, 64])
    dropout: float = 0.0
    batch_norm: bool = False


@register_model("dagfm_plus")
class DAGFMPlus(DAGFM):
    Config = DAGFMPlusConfig

    def __init__(self, feature_map: FeatureMap, cfg: DAGFMPlusConfig):
        super().__init__(feature_map, cfg)
        self.mlp = MLP(feature_map.num_fields * cfg.embed_dim, cfg.mlp_hidden, cfg.dropout,
                       cfg.batch_norm, out_dim=1)

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        states = self.dag(e)
        explicit = self.readout(pool(states)).squeeze(-1)
        total = states[0]
        for h in states[1:]:
            total = total + h
        implicit = self.mlp(total.reshape(total.shape[0], -1)).squeeze(-1)
        return explicit + implicit
