"""`kdrec pretrain-teacher`: train the configured teacher once and store it under its signature."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from kdrec.artifacts import atomic_write_json
from kdrec.config import config_dir
from kdrec.stages.common import (build_task, get_teacher, guarded, load_data, pick_device,
                                 print_metrics_table, run_dir, save_config, train_config)


@guarded
def run(cfg: DictConfig) -> dict:
    out = run_dir(cfg)
    device = pick_device(cfg)
    data = load_data(cfg)
    task = build_task(cfg, data, device, train_config(cfg, cfg.teacher).batch_size)
    teacher, tdir, metrics, trained = get_teacher(cfg, data, task)
    result = {**metrics, "teacher_dir": str(tdir), "trained_now": trained,
              "model": cfg.teacher.name, "dataset": cfg.dataset.name}
    atomic_write_json(out / "metrics.json", result)
    save_config(out / "config_resolved.yaml", cfg)
    print_metrics_table(f"teacher {cfg.teacher.name} on {cfg.dataset.name}", {cfg.teacher.name: metrics})
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)
