"""`kdrec pretrain-teacher`: train the configured teacher once and store it under its signature.
Epoch figures go to the configured ``logger=`` as ``teacher/<phase>``; the Hydra main returns the
teacher's monitored valid metric."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from kdrec.artifacts import atomic_write_json
from kdrec.config import config_dir
from kdrec.runtime import prepare, run_dir, save_config
from kdrec.stages.output import console, guarded, print_metrics_table
from kdrec.teachers import get_teacher
from kdrec.tracking import objective, session


@guarded
def run(cfg: DictConfig) -> dict:
    out = run_dir(cfg)
    with session(cfg, "pretrain-teacher", out) as tr:
        rt = prepare(cfg, model_role="teacher")
        t = get_teacher(cfg, rt.data, rt.task, console=console, loggers=tr.scoped("teacher"))
        result = {**t.metrics, "teacher_dir": str(t.dir), "trained_now": t.trained_now,
                  "model": cfg.teacher.name, "dataset": cfg.dataset.name}
        save_config(out / "config_resolved.yaml", cfg)
        atomic_write_json(out / "metrics.json", result)
        tr.result(result)
    print_metrics_table(f"teacher {cfg.teacher.name} on {cfg.dataset.name}", {cfg.teacher.name: t.metrics})
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    return objective(cfg.dataset.name, run(cfg).get("valid"))
