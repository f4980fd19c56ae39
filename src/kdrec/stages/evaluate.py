"""`kdrec evaluate run=<run dir>`: rebuild the run's data and models from its saved config, load
its checkpoints and re-score them on valid and test. The scores go to the configured ``logger=``;
the Hydra main returns the student's (else the teacher's) monitored valid metric."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from kdrec.artifacts import atomic_write_json
from kdrec.config import config_dir
from kdrec.runs import load_models, load_run_config
from kdrec.runtime import prepare, run_dir, save_config
from kdrec.stages.output import guarded, print_metrics_table
from kdrec.tracking import objective, record


@guarded
def run(cfg: DictConfig) -> dict:
    rdir, run_cfg = load_run_config(cfg, "evaluate")
    rt = prepare(run_cfg)
    models = load_models(run_cfg, rdir, rt.task, rt.data, "evaluate")
    result = {name: {"valid": rt.task.evaluate(m, "valid"), "test": rt.task.evaluate(m, "test")}
              for name, m in models.items()}
    out = run_dir(cfg)
    save_config(out / "config_resolved.yaml", cfg)
    evaluation = {"run": str(rdir), "dataset": run_cfg.dataset.name, "models": result}
    atomic_write_json(out / "evaluation.json", evaluation)
    record(run_cfg, "evaluate", out, {k.split(" ", 1)[0]: v for k, v in result.items()}, source=rdir)
    print_metrics_table(f"evaluate {rdir}", result)
    return evaluation


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    ev = run(cfg)
    scored = next((m for k, m in ev["models"].items() if k.startswith("student")), None) \
        or next(iter(ev["models"].values()))
    return objective(ev["dataset"], scored["valid"])
