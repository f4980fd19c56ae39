"""`kdrec distill`: teacher from the signature cache (pretrained first if missing), then the
distiller's phases on the student, then metrics, FLOPs and the student checkpoint
(:mod:`kdrec.pipeline`); ``device=ddp`` hands the same pipeline to torchrun workers. Epoch
figures go to the configured ``logger=`` (the teacher's pretraining as ``teacher/<phase>``); the
Hydra main returns the student's monitored valid metric (``hydra/sweeper=optuna`` tunes it)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from kdrec.config import config_dir
from kdrec.pipeline import distill
from kdrec.runtime import prepare, run_dir
from kdrec.stages.output import console, guarded, print_metrics_table
from kdrec.tracking import objective, session


def print_result(cfg: DictConfig, metrics: dict) -> None:
    rows = {f"student {cfg.student.name} ({cfg.distiller.name})": metrics}
    if "teacher" in metrics:
        rows = {f"teacher {cfg.teacher.name}": metrics["teacher"], **rows}
    print_metrics_table(f"distill on {cfg.dataset.name}", rows)


@guarded
def run(cfg: DictConfig) -> dict:
    out = run_dir(cfg)
    with session(cfg, "distill", out) as tr:
        if cfg.device.type == "ddp":
            from kdrec.stages.ddp import launch

            metrics = launch(cfg, out, loggers=tr.loggers, teacher_loggers=tr.scoped("teacher"))
        else:
            metrics = distill(prepare(cfg), out, console=console, loggers=tr.loggers,
                              teacher_loggers=tr.scoped("teacher"))
        tr.result(metrics)
    if "valid" in metrics:
        print_result(cfg, metrics)
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    return objective(cfg.dataset.name, run(cfg).get("valid"))
