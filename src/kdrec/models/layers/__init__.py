from kdrec.models.layers.embedding import FieldEmbedding
from kdrec.models.layers.mlp import MLP

__all__ = ["FieldEmbedding", "MLP"]
