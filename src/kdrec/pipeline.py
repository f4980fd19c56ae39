"""The distill pipeline, shared by ``kdrec distill`` and every ``device=ddp`` worker: teacher
from the signature cache (pretrained first if missing), the distiller's phases on the student,
then metrics, FLOPs and the student checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kdrec import workdir
from kdrec.artifacts import atomic_torch_save, atomic_write_json, signature
from kdrec.bench.flops import param_counts, ratios
from kdrec.config import train_config
from kdrec.distill.base import DistillContext, build_distiller
from kdrec.runtime import Runtime, save_config, seed_everything
from kdrec.teachers import get_teacher
from kdrec.train import distributed as ddp
from kdrec.train.loop import EpochLogger, fit

log = logging.getLogger("kdrec")


def run_signature(cfg: DictConfig) -> str:
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in ("resume", "run", "paths", "device", "logger"):
        c.pop(k, None)
    c["trainer"].pop("progress", None)
    return signature(c)


def distill_work_root(cfg: DictConfig) -> Path:
    """Where a distill run's checkpoints in progress live (one locked subdirectory per run:
    :mod:`kdrec.workdir`); ``kdrec table --park`` reads them there."""
    return Path(cfg.paths.work) / f"distill-{run_signature(cfg)}"


def distill(rt: Runtime, out: Path, work: Path | None = None, console=None,
            loggers: tuple[EpochLogger, ...] = (), teacher_loggers: tuple[EpochLogger, ...] = ()) -> dict:
    """Run the distillation; under torchrun every rank runs it (in the launcher's ``work``
    directory) and rank 0 writes the artifacts into ``out``. A teacher pretrained here logs its
    epochs to ``teacher_loggers``, the student's phases to ``loggers``."""
    cfg, task, device = rt.cfg, rt.task, rt.device
    tcfg = train_config(cfg, cfg.student)
    distiller = build_distiller(cfg.distiller)

    teacher = None
    if distiller.needs_teacher:
        teacher = get_teacher(cfg, rt.data, task, console=console, loggers=teacher_loggers)
        for p in teacher.model.parameters():
            p.requires_grad_(False)

    seed_everything(int(cfg.seed))  # the student's init, dropout and data order
    tmodel = teacher.model if teacher else None
    student = distiller.build_student(cfg.student, task.feature_map, tmodel).to(device)
    ctx = DistillContext(student, tmodel, task, device, teacher.dir if teacher else None, int(cfg.seed))
    distiller.setup(ctx)
    aux = distiller.aux_modules().to(device)
    save_modules = {"model": student, **({"aux": aux} if len(aux) else {})}

    claimed = None
    if work is None:
        claimed = workdir.claim(distill_work_root(cfg), bool(cfg.resume))
        work = claimed.path
    try:
        phases = []
        for phase in distiller.phases(ctx):
            log.info("phase %s: %d trainable tensors", phase.name, len(phase.params))
            res = fit(phase, task, tcfg, ckpt_dir=work, seed=int(cfg.seed), save_modules=save_modules,
                      resume=bool(cfg.resume), console=console, loggers=loggers)
            phases.append(res.__dict__)

        metrics = {"valid": task.evaluate(student, "valid"), "test": task.evaluate(student, "test"),
                   "params": param_counts(student)["params"],
                   "train_seconds": sum(p["seconds"] for p in phases), "phases": phases,
                   "model": cfg.student.name, "distiller": cfg.distiller.name,
                   "dataset": cfg.dataset.name, "seed": int(cfg.seed)}
        flops = {"student": task.profile(student, latency=False)}
        if teacher is not None:
            metrics["teacher"] = {**{k: teacher.metrics[k] for k in ("valid", "test", "params")},
                                  "model": cfg.teacher.name, "dir": str(teacher.dir)}
            flops["teacher"] = task.profile(teacher.model, latency=False)
            flops["ratios"] = ratios(flops["student"], flops["teacher"])
        metrics["flops"] = flops
        metrics.update(distiller.report())
        if ddp.active():
            metrics["distributed"] = {"world_size": ddp.world_size(), "backend": cfg.device.backend}
        if ddp.is_main():
            atomic_torch_save(out / "student.pt", {
                "state_dict": student.state_dict(), "aux_state_dict": aux.state_dict(),
                "student": getattr(student, "build_config", None) or OmegaConf.to_container(cfg.student, resolve=True),
                "feature_map": task.feature_map.to_dict()})
            save_config(out / "config_resolved.yaml", cfg)
            atomic_write_json(out / "metrics.json", metrics)  # last: its presence means the run finished
    except BaseException:
        if claimed is not None:
            claimed.release(remove=False)  # kept for resume=true
        raise
    if claimed is not None:
        claimed.release(remove=True)  # finished: the run dir holds the artifacts now
    return metrics
