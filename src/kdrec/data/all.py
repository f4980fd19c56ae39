"""Importing this module registers every dataset. Add one import line per new source module."""

from kdrec.data.sources import synthetic  # noqa: F401
