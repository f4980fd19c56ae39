"""`kdrec evaluate run=<run dir>`: rebuild the run's data and models from its saved config, load
its checkpoints and re-score them on valid and test."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from kdrec.artifacts import atomic_write_json, torch_load
from kdrec.config import config_dir
from kdrec.errors import KdrecError
from kdrec.stages.common import (build, build_task, get_teacher, guarded, load_data, pick_device,
                                 print_metrics_table, run_dir, save_config, train_config)


def load_run_config(run: str | None) -> tuple[Path, DictConfig]:
    if not run:
        raise KdrecError("evaluate needs run=<run directory> (a finished pretrain-teacher or distill run)")
    rdir = Path(run)
    cfg_path = rdir / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise KdrecError(f"{rdir} is not a kdrec run directory: {cfg_path} is missing")
    return rdir, OmegaConf.load(cfg_path)


def load_models(run_cfg: DictConfig, rdir: Path, task, data) -> dict:
    """The run's models with trained weights: the teacher from its signature cache and, for a
    distill run, the student from ``student.pt``."""
    models = {}
    if (rdir / "student.pt").is_file():
        state = torch_load(rdir / "student.pt")
        student = build(OmegaConf.create(state["student"]), task, "student").to(task.device)
        student.load_state_dict(state["state_dict"])
        student.eval()
        models[f"student {run_cfg.student.name}"] = student
        from kdrec.distill.base import get_distiller_class

        if not get_distiller_class(run_cfg.distiller.name).needs_teacher:
            return models
    teacher, _, _, _ = get_teacher(run_cfg, data, task, train_if_missing=False)
    return {f"teacher {run_cfg.teacher.name}": teacher, **models}


@guarded
def run(cfg: DictConfig) -> dict:
    rdir, run_cfg = load_run_config(cfg.run)
    run_cfg.paths = cfg.paths  # artifacts are looked up where this invocation points
    run_cfg.device = cfg.device
    device = pick_device(run_cfg)
    data = load_data(run_cfg)
    task = build_task(run_cfg, data, device, train_config(run_cfg, run_cfg.student).batch_size)
    models = load_models(run_cfg, rdir, task, data)
    result = {name: {"valid": task.evaluate(m, "valid"), "test": task.evaluate(m, "test")}
              for name, m in models.items()}
    out = run_dir(cfg)
    atomic_write_json(out / "evaluation.json", {"run": str(rdir), "models": result})
    save_config(out / "config_resolved.yaml", cfg)
    print_metrics_table(f"evaluate {rdir}", result)
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)
