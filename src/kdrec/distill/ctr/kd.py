"""Plain training (``none``) and Hinton-style logit distillation (``kd``) for CTR students."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdrec.distill.base import DistillContext, Distiller, Phase, register_distiller, unique_params


@register_distiller("none")
class NoDistill(Distiller):
    needs_teacher = False

    def phases(self, ctx: DistillContext) -> list[Phase]:
        s = ctx.student

        def loss(batch):
            return ctx.task.task_loss(s, batch)

        return [Phase("train", loss, unique_params(s.parameters()), [s])]


@register_distiller("kd")
class LogitKD(Distiller):
    """loss = BCE(y, s) + alpha * MSE(s / T, t / T) on logits; teacher logits cached once per teacher."""

    @dataclass
    class Config:
        alpha: float = 1.0
        temperature: float = 1.0

    def setup(self, ctx: DistillContext) -> None:
        self.teacher_logits = ctx.task.teacher_logits(ctx.teacher, "train", ctx.teacher_dir)

    def phases(self, ctx: DistillContext) -> list[Phase]:
        s, a, T = ctx.student, self.cfg.alpha, self.cfg.temperature

        def loss(batch):
            z = s(batch.x)
            t = self.teacher_logits[batch.idx]
            return F.binary_cross_entropy_with_logits(z, batch.y) + a * F.mse_loss(z / T, t / T)

        return [Phase("distill", loss, unique_params(s.parameters()), [s])]
