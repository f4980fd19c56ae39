"""Importing this module registers every model. Add one import line per new model module."""

from kdrec.models.ctr import dnn, fm, lr  # noqa: F401
