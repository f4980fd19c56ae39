"""The distiller seam.

A distiller sees the student, the frozen teacher and the task, and declares one or more
:class:`Phase` objects; the training loop runs them in order and knows nothing about any paper.
A phase owns its loss closure (task loss + whatever the method adds), the parameters the optimizer
updates, optional trainer overrides (e.g. its own learning rate) and optional per-epoch hooks
(RRD resamples, DE anneals a temperature). Auxiliary trainable modules a method adds (DE's experts,
ROK's knowledge encoder) are returned by ``aux_modules`` so checkpoints carry them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kdrec.registry import Registry
from kdrec.tasks.base import Task
from kdrec.schema import build_dataclass
from kdrec.train.phase import Phase, unique_params  # noqa: F401  (re-exported for distillers)

DISTILLERS = Registry("distiller", "kdrec.distill")
register_distiller = DISTILLERS.register


@dataclass
class DistillContext:
    student: nn.Module
    teacher: nn.Module | None
    task: Task  # CTRTask / TopKTask (kdrec.tasks.base.Task)
    device: torch.device
    teacher_dir: Path | None  # where teacher-derived caches live (computed once per teacher)
    seed: int = 0
    extra: dict = field(default_factory=dict)


class Distiller:
    """Base: plain training of the student on the task loss (``distiller=none``)."""

    needs_teacher = True

    @dataclass
    class Config:
        pass

    def __init__(self, cfg):
        self.cfg = cfg

    def build_student(self, student_cfg, feature_map, teacher: nn.Module | None) -> nn.Module:
        """The student model. A method may wrap or extend the configured model (ROK builds the
        backbone with extra fields and plugs its knowledge base in); a model that is not rebuilt
        from ``student_cfg`` alone exposes ``build_config`` (saved in student.pt instead)."""
        from kdrec.models.registry import build_model

        return build_model(student_cfg, feature_map, where="student")

    def report(self) -> dict:
        """Extra entries for the run's metrics.json (e.g. a pretraining stage's results)."""
        return {}

    def setup(self, ctx: DistillContext) -> None:
        """Prepare teacher-derived caches and auxiliary modules (called once, before phases)."""

    def aux_modules(self) -> nn.ModuleDict:
        return nn.ModuleDict()

    def phases(self, ctx: DistillContext) -> list[Phase]:
        raise NotImplementedError


def get_distiller_class(name: str) -> type:
    return DISTILLERS.get(name)


def distiller_config(cfg):
    from kdrec.models.registry import model_params

    cls = get_distiller_class(cfg["name"])
    return build_dataclass(cls.Config, model_params(cfg), f"distiller ({cfg['name']})")


def build_distiller(cfg) -> Distiller:
    return get_distiller_class(cfg["name"])(distiller_config(cfg))
