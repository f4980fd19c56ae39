"""BPR-MF (Rendle et al. 2009): a user and an item embedding table, score = inner product."""

from __future__ import annotations

from kdrec.models.registry import register_model
from kdrec.models.topk.base import TopKModel


@register_model("mf")
class MF(TopKModel):
    pass
