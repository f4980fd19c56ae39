"""Importing this module registers every distiller. Add one import line per new module."""

from kdrec.distill.ctr import kd  # noqa: F401
