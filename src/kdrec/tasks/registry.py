"""Task kinds by name: each dataset declares one (``ctr`` or ``topk``)."""

from __future__ import annotations

from kdrec.errors import ConfigError


def get_task_class(kind: str):
    if kind == "ctr":
        from kdrec.tasks.ctr import CTRTask

        return CTRTask
    if kind == "topk":
        from kdrec.tasks.topk import TopKTask

        return TopKTask
    raise ConfigError(f"unknown task kind {kind!r}")
