"""`kdrec distill`: teacher from the signature cache (pretrained first if missing), then the
distiller's phases on the student, then metrics, FLOPs and the student checkpoint."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from kdrec.artifacts import atomic_torch_save, atomic_write_json, signature
from kdrec.bench.flops import ratios
from kdrec.config import config_dir, train_config
from kdrec.distill.base import DistillContext, build_distiller
from kdrec.stages.common import (build_task, console, count_params, get_teacher, guarded,
                                 load_data, pick_device, print_metrics_table, run_dir, save_config,
                                 seed_everything)
from kdrec.train import distributed as ddp
from kdrec.train.loop import fit

log = logging.getLogger("kdrec")


def run_signature(cfg: DictConfig) -> str:
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in ("resume", "run", "paths", "device"):
        c.pop(k, None)
    c["trainer"].pop("progress", None)
    return signature(c)


@guarded
def run(cfg: DictConfig) -> dict:
    if cfg.device.type == "ddp" and not ddp.in_worker():
        from kdrec.stages.ddp import launch

        metrics = launch(cfg, run_dir(cfg))
        return _finish_print(cfg, metrics) if "valid" in metrics else metrics
    return run_body(cfg, run_dir(cfg))


def _finish_print(cfg: DictConfig, metrics: dict) -> dict:
    rows = {f"student {cfg.student.name} ({cfg.distiller.name})": metrics}
    if "teacher" in metrics:
        rows = {f"teacher {cfg.teacher.name}": metrics["teacher"], **rows}
    print_metrics_table(f"distill on {cfg.dataset.name}", rows)
    return metrics


def run_body(cfg: DictConfig, out: Path) -> dict:
    """The distillation itself; under torchrun every rank runs it and rank 0 writes the artifacts."""
    device = pick_device(cfg)
    data = load_data(cfg)
    tcfg = train_config(cfg, cfg.student)
    task = build_task(cfg, data, device, tcfg.batch_size)
    distiller = build_distiller(cfg.distiller)

    teacher = tdir = tmetrics = None
    if distiller.needs_teacher:
        teacher, tdir, tmetrics, _ = get_teacher(cfg, data, task)
        for p in teacher.parameters():
            p.requires_grad_(False)

    seed_everything(cfg.seed)
    student = distiller.build_student(cfg.student, task.feature_map, teacher).to(device)
    ctx = DistillContext(student, teacher, task, device, tdir, cfg.seed)
    distiller.setup(ctx)
    aux = distiller.aux_modules().to(device)
    save_modules = {"model": student, **({"aux": aux} if len(aux) else {})}

    work = Path(cfg.paths.work) / f"distill-{run_signature(cfg)}"
    if not cfg.resume and work.exists() and ddp.is_main():
        shutil.rmtree(work)
    ddp.barrier()
    phases = []
    for phase in distiller.phases(ctx):
        log.info("phase %s: %d trainable tensors", phase.name, len(phase.params))
        res = fit(phase, task, tcfg, ckpt_dir=work, seed=cfg.seed, save_modules=save_modules,
                  resume=cfg.resume, console=console)
        phases.append(res.__dict__)

    metrics = {"valid": task.evaluate(student, "valid"), "test": task.evaluate(student, "test"),
               "params": count_params(student),
               "train_seconds": sum(p["seconds"] for p in phases), "phases": phases,
               "model": cfg.student.name, "distiller": cfg.distiller.name,
               "dataset": cfg.dataset.name, "seed": cfg.seed}
    flops = {"student": task.profile(student, latency=False)}
    if teacher is not None:
        metrics["teacher"] = {**{k: tmetrics[k] for k in ("valid", "test", "params")},
                              "model": cfg.teacher.name, "dir": str(tdir)}
        flops["teacher"] = task.profile(teacher, latency=False)
        flops["ratios"] = ratios(flops["student"], flops["teacher"])
    metrics["flops"] = flops
    metrics.update(distiller.report())
    if ddp.active():
        metrics["distributed"] = {"world_size": ddp.world_size(), "backend": cfg.device.backend}
    if not ddp.is_main():
        return metrics
    atomic_torch_save(out / "student.pt", {
        "state_dict": student.state_dict(), "aux_state_dict": aux.state_dict(),
        "student": getattr(student, "build_config", None) or OmegaConf.to_container(cfg.student, resolve=True),
        "feature_map": task.feature_map.to_dict()})
    atomic_write_json(out / "metrics.json", metrics)
    save_config(out / "config_resolved.yaml", cfg)
    shutil.rmtree(work, ignore_errors=True)  # finished: the run dir holds the artifacts now
    if ddp.in_worker():
        return metrics
    return _finish_print(cfg, metrics)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)
