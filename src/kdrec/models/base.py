"""CTR model contract.

Every CTR model is a plain ``nn.Module`` split torchrec-style into parts:

* ``embedding`` - a :class:`FieldEmbedding` mapping ids [B, F] to vectors [B, F, D];
* ``score(x, e)`` - interaction + output on the ids and their embeddings, returning logits [B].

``forward(x) = score(x, embedding(x))``. A distiller may hand a student the teacher's embedding
module (KD-DAGFM shares it, frozen), and ROK can call ``score`` with extra fields appended to ``e``.
No model knows whether it is a teacher or a student, and none picks a device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from kdrec.data.spec import FeatureMap
from kdrec.models.layers.embedding import FieldEmbedding
from kdrec.schema import ge, one_of


@dataclass
class CTRModelConfig:
    """Fields shared by every CTR model config; subclasses add their own."""

    embed_dim: int = field(default=10, metadata=ge(1))
    # "normal": N(0, 1e-4) (FuxiCTR/BARS); "xavier": xavier-uniform of each field's table (the
    # official DAGFM code's init)
    embed_init: str = field(default="normal", metadata=one_of("normal", "xavier"))


class CTRModel(nn.Module):
    Config = CTRModelConfig

    def __init__(self, feature_map: FeatureMap, cfg: CTRModelConfig):
        super().__init__()
        self.cfg = cfg
        self.feature_map = feature_map
        self.num_fields = feature_map.num_fields
        self.embedding = FieldEmbedding(feature_map.vocab_sizes, cfg.embed_dim, init=cfg.embed_init)

    def score(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x, self.embedding(x))

    def embedding_parameters(self) -> list[nn.Parameter]:
        """Parameters of embedding tables (the L2 on embeddings applies to these)."""
        return [m.weight for m in self.modules() if isinstance(m, FieldEmbedding)]
