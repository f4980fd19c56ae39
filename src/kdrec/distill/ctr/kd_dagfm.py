"""KD-DAGFM and KD-DAGFM+ (Tian et al., WSDM 2023): the paper's phases after the teacher.

1. teacher: pretrained with BCE, loaded from the signature cache by the stage (not here);
2. ``distill``: the student starts from a *copy* of the teacher's embedding table and keeps it
   frozen; only the DAG (and read-out / MLP) train, on
   ``alpha * mean BCE(y, z_s) + beta * mean (z_t - z_s)^2`` with the official alpha = 0.1,
   beta = 921.6 (the official runtime configs' values, on the same batch mean). Teacher
   logits come from the per-teacher cache (the teacher is in eval mode, so they equal the
   official on-line ones);
3. ``finetune``: BCE alone with every student parameter, embeddings included, trainable.

Both phases early-stop on validation AUC and keep their best epoch; phase 2 by default as the
official code (15 epochs without gain, no lr cuts), phase 3 under the student's trainer settings.
The table is copied rather than shared so that fine-tuning never alters the cached teacher object
(whose logits, metrics and FLOPs the stage still reports); at the start of phase 2 the two tables
are identical, as in the official code where they are one module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch.nn.functional as F

from kdrec.distill.base import DistillContext, Distiller, Phase, register_distiller, unique_params
from kdrec.errors import ConfigError


@register_distiller("kd_dagfm")
class KDDAGFM(Distiller):
    student_models: tuple[str, ...] = ("dagfm", "dagfm_plus")

    @dataclass
    class Config:
        alpha: float = 0.1  # weight of the BCE term in the distillation phase
        beta: float = 921.6  # weight of the mean squared logit error in the distillation phase
        finetune: bool = True  # run phase 3 (BCE, embeddings unfrozen)
        # trainer keys for phase 2 only; by default the official code's stopping (patience 15, no lr cuts)
        distill_overrides: dict = field(default_factory=lambda: {"patience": 15, "lr_plateau_patience": 1000})
        finetune_overrides: dict = field(default_factory=dict)  # trainer keys for phase 3 only

    def setup(self, ctx: DistillContext) -> None:
        s, t = ctx.student, ctx.teacher
        name = getattr(s, "registry_name", type(s).__name__)
        if name not in self.student_models:
            raise ConfigError(f"distiller {self.registry_name} needs student in {list(self.student_models)}, "
                              f"got student={name}")
        if t is None or not hasattr(t, "embedding"):
            raise ConfigError(f"distiller {self.registry_name} needs a CTR teacher with an `embedding` table")
        if t.embedding.dim != s.embedding.dim or t.embedding.vocab_sizes != s.embedding.vocab_sizes:
            raise ConfigError(
                f"distiller {self.registry_name}: the student shares the teacher's embedding table, so "
                f"student.embed_dim ({s.embedding.dim}) must equal teacher.embed_dim ({t.embedding.dim})")
        s.embedding = copy.deepcopy(t.embedding).to(ctx.device)
        self.teacher_logits = ctx.task.teacher_logits(t, "train", ctx.teacher_dir)

    def phases(self, ctx: DistillContext) -> list[Phase]:
        s, task, cfg = ctx.student, ctx.task, self.cfg
        emb_ids = {id(p) for p in s.embedding.parameters()}
        dense = [p for p in unique_params(s.parameters()) if id(p) not in emb_ids]

        def distill_loss(batch):
            z = s(batch.x)
            t = self.teacher_logits[batch.idx]
            return (cfg.alpha * F.binary_cross_entropy_with_logits(z, batch.y)
                    + cfg.beta * F.mse_loss(z, t))

        def finetune_loss(batch):
            return task.task_loss(s, batch)

        phases = [Phase("distill", distill_loss, dense, [s], overrides=dict(cfg.distill_overrides))]
        if cfg.finetune:
            phases.append(Phase("finetune", finetune_loss, unique_params(s.parameters()), [s],
                                overrides=dict(cfg.finetune_overrides)))
        return phases


@register_distiller("kd_dagfm_plus")
class KDDAGFMPlus(KDDAGFM):
    """KD-DAGFM+ : the same phases for the DAGFM+ student (explicit DAG + implicit MLP)."""

    student_models = ("dagfm_plus",)
