"""Hydra callback that ``logger=mlflow`` adds: a ``-m`` sweep (a grid, or Optuna trials) is one
parent MLflow run and its jobs are child runs. The parent holds the sweep's overrides, and at the
end the sweep's report (``summary.md``, ``results.csv``, ``pareto.png``, ``significance.csv``) and
Optuna's ``optimization_results.yaml`` (its ``best_value`` also as a metric)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("kdrec")
SWEEP_FILES = ("summary.md", "results.csv", "pareto.png", "significance.csv", "optimization_results.yaml")


def _conf(config: DictConfig):
    from kdrec.schema import build_dataclass
    from kdrec.tracking.backends.mlflow_store import MlflowConfig

    if "logger" not in config or config.logger is None or config.logger.get("name") != "mlflow":
        return None
    values = OmegaConf.to_container(config.logger, resolve=True)
    values.pop("name")
    return build_dataclass(MlflowConfig, values, "logger (mlflow)")


class MlflowSweepRun(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        conf = _conf(config)
        if conf is None:
            return
        from kdrec.tracking.backends.mlflow_store import PARENT_FILE, open_store

        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        client, exp_id = open_store(conf, config.paths.root)
        stage = str(config.hydra.job.name).replace("_", "-")
        run = client.create_run(exp_id, run_name=f"sweep {stage} {sweep_dir.name}", tags={
            "kdrec.stage": stage, "kdrec.sweep_dir": str(sweep_dir.resolve()),
            **{str(k): str(v) for k, v in (conf.tags or {}).items()}})
        overrides = list(config.hydra.overrides.task)
        params = {"sweep_overrides": " ".join(overrides)[:6000]}
        sweeper = config.hydra.get("sweeper") or {}
        if "params" in sweeper and sweeper.params:  # Optuna's search space
            params.update({f"search.{k}": str(v) for k, v in sweeper.params.items()})
        for k, v in params.items():
            client.log_param(run.info.run_id, k, v)
        (sweep_dir / PARENT_FILE).write_text(json.dumps({"run_id": run.info.run_id,
                                                         "tracking_uri": client.tracking_uri}))
        log.info("mlflow: sweep parent run %s", run.info.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        conf = _conf(config)
        if conf is None:
            return
        from kdrec.tracking.backends.mlflow_store import PARENT_FILE, open_store

        sweep_dir = Path(config.hydra.sweep.dir)
        if not (sweep_dir / PARENT_FILE).is_file():
            return
        run_id = json.loads((sweep_dir / PARENT_FILE).read_text())["run_id"]
        client, _ = open_store(conf, config.paths.root)
        for name in SWEEP_FILES:
            if (sweep_dir / name).is_file():
                client.log_artifact(run_id, str(sweep_dir / name))
        best = sweep_dir / "optimization_results.yaml"
        if best.is_file():
            value = OmegaConf.load(best).get("best_value")
            if value is not None:
                client.log_metric(run_id, "best_value", float(value))
        client.set_terminated(run_id, "FINISHED")
