"""`kdrec evaluate run=<run dir>`: rebuild the run's data and models from its saved config, load
its checkpoints and re-score them on valid and test."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from kdrec.artifacts import atomic_write_json
from kdrec.config import config_dir
from kdrec.runs import load_models, load_run_config
from kdrec.runtime import prepare, run_dir, save_config
from kdrec.stages.output import guarded, print_metrics_table


@guarded
def run(cfg: DictConfig) -> dict:
    rdir, run_cfg = load_run_config(cfg.run, "evaluate")
    run_cfg.paths = cfg.paths  # artifacts are looked up where this invocation points
    run_cfg.device = cfg.device
    rt = prepare(run_cfg)
    models = load_models(run_cfg, rdir, rt.task, rt.data)
    result = {name: {"valid": rt.task.evaluate(m, "valid"), "test": rt.task.evaluate(m, "test")}
              for name, m in models.items()}
    out = run_dir(cfg)
    save_config(out / "config_resolved.yaml", cfg)
    atomic_write_json(out / "evaluation.json", {"run": str(rdir), "models": result})
    print_metrics_table(f"evaluate {rdir}", result)
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)
