"""ROK's knowledge base and the backbone it plugs into (Liu et al., "Retrieval-Oriented Knowledge
for Click-Through Rate Prediction", CIKM 2024; official code unreleased, design per issue 6).

* :class:`KnowledgeBase` - a retrieval-oriented embedding table of its own (one vector per
  feature value: the "decomposition") and a knowledge encoder (MLP: the "reconstruction") that
  predicts, from a row's own features alone, the retrieval teacher's aggregated representation
  r_i. Trained by ``distiller=rok`` (MSE + InfoNCE); at inference no retrieval is needed.
* :class:`ROKStudent` (registered ``rok_student``) - any CTR backbone of the zoo with the knowledge
  base plugged in:

  - **instance-wise**: r-hat is concatenated to the input of the backbone's final (linear) output
    layer. Because that layer is linear, ``Linear([h; r-hat]) = Linear_h(h) + Linear_r(r-hat)``,
    so this is implemented exactly, for every backbone, as the backbone's logit plus a linear
    map of r-hat (``instance_hidden`` optionally puts an MLP before that map);
  - **feature-wise**: the F retrieval-oriented embeddings are added as F extra fields of the
    backbone's interaction layer. The backbone is *built* on an extended feature map (the F
    fields plus F ``ro:<field>`` copies with the same vocabularies), so every layer sized from
    ``feature_map.num_fields`` (MLP inputs, cross layers, FM terms) sees 2F fields; its own
    embedding table covers only the F original fields, the extra fields' vectors come from the
    knowledge base (projected to the backbone's embedding size if they differ, times a learnable
    per-field gate), and ``score``
    gets ``x`` duplicated for the extra fields (first-order terms then have weights for them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from kdrec.data.spec import FeatureMap, FieldInfo
from kdrec.errors import ConfigError
from kdrec.models.layers.embedding import FieldEmbedding
from kdrec.models.layers.mlp import MLP
from kdrec.models.registry import build_model, register_model


class KnowledgeBase(nn.Module):
    def __init__(self, vocab_sizes: list[int], embed_dim: int, hidden: list[int], repr_dim: int):
        super().__init__()
        self.ro_embedding = FieldEmbedding(vocab_sizes, embed_dim)
        self.encoder = MLP(len(vocab_sizes) * embed_dim, hidden, out_dim=repr_dim)
        self.repr_dim = repr_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, F] -> (r-hat [B, R], retrieval-oriented embeddings [B, F, d])."""
        e = self.ro_embedding(x)
        return self.encoder(e.flatten(1)), e


def extended_feature_map(fm: FeatureMap) -> FeatureMap:
    """The F fields followed by F ``ro:<field>`` fields with the same vocabularies."""
    extra = [FieldInfo(f"ro:{f.name}", f.vocab_size, f.kind) for f in fm.fields]
    return FeatureMap(fm.dataset, [*fm.fields, *extra], fm.label, dict(fm.extra))


@dataclass
class ROKStudentConfig:
    backbone: dict = field(default_factory=dict)  # the backbone's model config (name + params)
    repr_dim: int = 0  # size of the teacher representation the knowledge base reconstructs
    ro_embed_dim: int = 10
    encoder_hidden: list[int] = field(default_factory=lambda: [256])
    instance: bool = True
    feature: bool = True
    instance_hidden: list[int] = field(default_factory=list)
    # start from the backbone alone: the instance head's output layer and a per-field gate on the
    # extra fields begin at zero, so the knowledge base's (frozen, O(1)) vectors do not swamp the
    # backbone's small embeddings (through its batch norms) before training decides their weight
    zero_init: bool = True


@register_model("rok_student")
class ROKStudent(nn.Module):
    Config = ROKStudentConfig

    def __init__(self, feature_map: FeatureMap, cfg: ROKStudentConfig):
        super().__init__()
        if not cfg.backbone or "name" not in cfg.backbone:
            raise ConfigError("rok_student.backbone must be a model config with a name")
        if cfg.repr_dim < 1:
            raise ConfigError(f"rok_student.repr_dim must be >= 1, not {cfg.repr_dim}")
        if not (cfg.instance or cfg.feature):
            raise ConfigError("ROK needs at least one integration mode: instance and/or feature")
        self.cfg = cfg
        self.feature_map = feature_map
        self.num_fields = feature_map.num_fields
        fmap = extended_feature_map(feature_map) if cfg.feature else feature_map
        self.backbone = build_model(cfg.backbone, fmap, where="rok backbone")
        D = self.backbone.embedding.dim
        if cfg.feature:  # the extra fields' vectors come from the knowledge base
            self.backbone.embedding = FieldEmbedding(feature_map.vocab_sizes, D)
            self.ro_proj = nn.Identity() if cfg.ro_embed_dim == D else nn.Linear(cfg.ro_embed_dim, D)
            self.ro_gate = nn.Parameter(torch.full((feature_map.num_fields, 1),
                                                   0.0 if cfg.zero_init else 1.0))
        self.kb = KnowledgeBase(feature_map.vocab_sizes, cfg.ro_embed_dim, cfg.encoder_hidden,
                                cfg.repr_dim)
        if cfg.instance:
            self.instance_head = MLP(cfg.repr_dim, cfg.instance_hidden, out_dim=1)
            if cfg.zero_init:
                nn.init.zeros_(self.instance_head[-1].weight)
                nn.init.zeros_(self.instance_head[-1].bias)

    @property
    def embedding(self) -> FieldEmbedding:
        return self.backbone.embedding

    @property
    def build_config(self) -> dict:
        """The config that rebuilds this model (saved in student.pt for `kdrec evaluate`)."""
        return {"name": "rok_student", **asdict(self.cfg)}

    def kb_parameters(self) -> list[nn.Parameter]:
        return list(self.kb.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e_ro = self.kb.ro_embedding(x)  # the encoder runs only where r-hat is used
        e = self.backbone.embedding(x)
        if self.cfg.feature:
            e = torch.cat([e, self.ro_gate * self.ro_proj(e_ro)], 1)
            x = torch.cat([x, x], 1)
        z = self.backbone.score(x, e)
        if self.cfg.instance:
            z = z + self.instance_head(self.kb.encoder(e_ro.flatten(1))).squeeze(-1)
        return z

    def embedding_parameters(self) -> list[nn.Parameter]:
        return [m.weight for m in self.modules() if isinstance(m, FieldEmbedding)]
