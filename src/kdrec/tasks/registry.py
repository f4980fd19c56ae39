"""Task kinds by name: each dataset declares one (``ctr`` or ``topk``); the task class registers
itself under that name."""

from __future__ import annotations

from kdrec.registry import Registry

TASKS = Registry("task", "kdrec.tasks")
register_task = TASKS.register


def get_task_class(kind: str) -> type:
    return TASKS.get(kind)
