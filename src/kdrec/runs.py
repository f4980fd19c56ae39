"""Finished run directories as inputs: ``evaluate``, ``benchmark-flops`` and ``export`` rebuild a
run's data and models from its saved config and load its trained weights."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kdrec.artifacts import torch_load
from kdrec.distill.base import get_distiller_class
from kdrec.errors import KdrecError
from kdrec.models.registry import build_model
from kdrec.teachers import get_teacher


def load_run_config(run: str | None, stage: str) -> tuple[Path, DictConfig]:
    if not run:
        raise KdrecError(f"{stage} needs run=<run directory> (a finished pretrain-teacher or distill run)")
    rdir = Path(run)
    cfg_path = rdir / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise KdrecError(f"{stage}: {rdir} is not a kdrec run directory: {cfg_path} is missing")
    return rdir, OmegaConf.load(cfg_path)


def load_models(run_cfg: DictConfig, rdir: Path, task, data) -> dict:
    """The run's models with trained weights: the teacher from its signature cache and, for a
    distill run, the student from ``student.pt``."""
    models = {}
    is_distill = "distiller" in run_cfg and (rdir / ".hydra" / "config.yaml").is_file() and \
        (rdir / "metrics.json").is_file() and "distiller" in (rdir / "metrics.json").read_text()
    if (rdir / "student.pt").is_file():
        state = torch_load(rdir / "student.pt")
        student = build_model(OmegaConf.create(state["student"]), task.feature_map, where="student").to(task.device)
        student.load_state_dict(state["state_dict"])
        student.eval()
        models[f"student {run_cfg.student.name}"] = student
        if not get_distiller_class(run_cfg.distiller.name).needs_teacher:
            return models
    elif is_distill or not (rdir / "metrics.json").is_file():
        raise KdrecError(f"{rdir} holds no finished run (no student.pt / metrics.json): it was interrupted "
                         "or is still running; finish it (resume=true) first")
    teacher = get_teacher(run_cfg, data, task, train_if_missing=False)
    return {f"teacher {run_cfg.teacher.name}": teacher.model, **models}
