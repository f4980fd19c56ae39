"""``logger=mlflow``: one MLflow run per job, in a local store under the outputs tree by default
(``<paths.root>/mlflow/mlflow.db``, artifacts beside it) or on a tracking server
(``logger.tracking_uri=http://host:5000``). A run holds the resolved config flattened as params,
per-epoch figures as ``<phase>/<figure>`` with the epoch as step, the final figures (``test_auc``,
...) and the run directory's result files as artifacts. The jobs of a ``-m`` sweep are children
of one parent run (:mod:`kdrec.tracking.sweep`)."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from kdrec.errors import ConfigError
from kdrec.tracking.backends.plain import CsvLogger
from kdrec.tracking.base import RunInfo, RunLogger, flat_config, register_logger, result_files

log = logging.getLogger("kdrec")
RUN_FILE = "mlflow_run.json"  # in the run directory: where its MLflow run is
PARENT_FILE = ".mlflow_parent.json"  # in a sweep directory: the sweep's parent run
_MAX_PARAM = 6000  # MLflow's limit on a param value's length
_BATCH = 100  # params per log_batch call (MLflow's limit)


@dataclass
class MlflowConfig:
    tracking_uri: str | None = None  # null: sqlite store under <paths.root>/mlflow/
    experiment_name: str = "kdrec"
    run_name: str | None = None  # null: stage, dataset and models (e.g. "distill synthetic dnn->fm (kd)")
    tags: dict | None = None  # extra tags on every run
    artifacts: bool = True  # log the run directory's result files (metrics.json, flops.json, plots, ...)
    epochs_csv: bool = True  # also write <run dir>/epochs.csv


def mlflow_module():
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError("logger=mlflow needs the mlflow package: pip install 'kdrec[tracking]' "
                          "(or pip install mlflow)") from None
    return MlflowClient


def local_store(root: str | Path) -> tuple[str, Path]:
    """(tracking URI, artifact root) of the store under an outputs tree."""
    base = Path(root).resolve() / "mlflow"
    return f"sqlite:///{base / 'mlflow.db'}", base / "artifacts"


def metric_name(name: str) -> str:
    """MLflow names allow letters, digits, ``_ - . / :`` and spaces: ``ndcg@20`` -> ``ndcg_at_20``."""
    return re.sub(r"[^\w\-./: ]", "_", name.replace("@", "_at_"))


def open_store(conf: MlflowConfig, paths_root: str | Path):
    """A client on the configured store and the id of the experiment (created if missing). The
    local store is created under a file lock: parallel sweep jobs must not both build its tables."""
    MlflowClient = mlflow_module()
    if conf.tracking_uri:
        uri, artifacts = conf.tracking_uri, None
    else:
        uri, artifacts = local_store(paths_root)
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sql_alchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)  # table migrations, once per store

    def connect():
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(conf.experiment_name)
        if exp is not None:
            return client, exp.experiment_id
        loc = (artifacts / conf.experiment_name).as_uri() if artifacts is not None else None
        return client, client.create_experiment(conf.experiment_name, artifact_location=loc)

    if artifacts is None:
        return connect()
    from kdrec.cache import entry_lock

    db = Path(uri.removeprefix("sqlite:///"))
    with entry_lock(db, what=f"MLflow store {db}"):
        return connect()


@register_logger("mlflow", config=MlflowConfig)
class MlflowLogger(RunLogger):
    def __init__(self, conf: MlflowConfig, info: RunInfo):
        self.conf, self.info = conf, info
        self.client, exp_id = open_store(conf, info.cfg.paths.root)
        tags = {"kdrec.stage": info.stage, "kdrec.run_dir": str(info.out.resolve()),
                **{str(k): str(v) for k, v in (conf.tags or {}).items()}}
        if info.source is not None:
            tags["kdrec.source_run"] = str(info.source.resolve())
        parent = read_parent(info.sweep_dir)
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(exp_id, run_name=conf.run_name or info.name, tags=tags)
        self.run_id = run.info.run_id
        self._log_params(info.cfg)
        (info.out / RUN_FILE).write_text(json.dumps({
            "tracking_uri": self.client.tracking_uri, "experiment_id": exp_id, "run_id": self.run_id}))
        log.info("mlflow: run %s in experiment %r at %s", self.run_id, conf.experiment_name,
                 self.client.tracking_uri)

    @classmethod
    def open(cls, conf: MlflowConfig, info: RunInfo):
        return [cls(conf, info), *([CsvLogger.for_run(info)] if conf.epochs_csv else [])]

    def _log_params(self, cfg: DictConfig) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:_MAX_PARAM]) for k, v in flat_config(cfg).items()]
        for i in range(0, len(params), _BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + _BATCH])

    def _log_metrics(self, metrics: dict[str, float], step: int, prefix: str = "") -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(metric_name(prefix + k), float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])

    def log_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        self._log_metrics(metrics, epoch, f"{phase}/")

    def log_result(self, metrics: dict[str, float]) -> None:
        self._log_metrics(metrics, 0)

    def close(self, status: str) -> None:
        if self.conf.artifacts:
            for path, folder in result_files(self.info.out):
                if path.name != RUN_FILE:
                    self.client.log_artifact(self.run_id, str(path), folder or None)
        self.client.set_terminated(self.run_id, status)


def read_parent(sweep_dir: Path | None) -> str | None:
    """The parent run id the sweep callback wrote for this sweep, if any."""
    if sweep_dir is None or not (sweep_dir / PARENT_FILE).is_file():
        return None
    return json.loads((sweep_dir / PARENT_FILE).read_text()).get("run_id")
