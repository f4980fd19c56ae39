"""Importing this module registers every dataset. Add one import line per new source module."""

from kdrec.data.sources import synthetic  # noqa: F401
from kdrec.data.sources import gowalla, interactions, movielens_topk, synthetic_topk  # noqa: F401  (top-K)
from kdrec.data.sources import avazu, movielens, table  # noqa: F401  (real CTR tables)
