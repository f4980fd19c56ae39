"""Importing this module registers every model. Add one import line per new model module."""

from kdrec.models.ctr import dnn, fm, lr  # noqa: F401
from kdrec.models.ctr import autoint, dagfm, dcnv2, deepfm, fibinet, xdeepfm  # noqa: F401  (KD-DAGFM family)
from kdrec.models.topk import lightgcn, mf  # noqa: F401  (top-K)
from kdrec.models.ctr import rim, rok  # noqa: F401  (retrieval-oriented knowledge)
