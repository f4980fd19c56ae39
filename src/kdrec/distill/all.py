"""Importing this module registers every distiller. Add one import line per new module."""

from kdrec.distill.ctr import kd  # noqa: F401
from kdrec.distill.ctr import kd_dagfm  # noqa: F401  (KD-DAGFM family)
from kdrec.distill.topk import cd, de, hetcomp, phr, rd, rrd, td  # noqa: F401  (top-K)
from kdrec.distill.ctr import rok  # noqa: F401  (retrieval-oriented knowledge)
