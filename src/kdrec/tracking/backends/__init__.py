"""Tracking backends, one module each; every module registers itself in ``LOGGERS``."""
