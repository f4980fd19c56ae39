"""The `logger=` group: what each backend recorded, read back through the libraries' own readers
(csv module, TensorBoard's EventAccumulator, mlflow.MlflowClient) from real local stores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from kdrec.errors import KdrecError

SMOKE = ["experiment=smoke", "trainer.epochs=3", "dataset.num_rows=4000", "device.threads=1"]


def distill_in_process(compose_cfg, tmp_path: Path, *overrides: str) -> tuple[Path, dict]:
    from kdrec.stages.distill import run

    cfg = compose_cfg(*SMOKE, f"paths.root={tmp_path / 'out'}", *overrides)
    metrics = run(cfg)
    runs = sorted((tmp_path / "out" / "runs" / "in_process").iterdir(), key=lambda p: p.stat().st_mtime)
    return runs[-1], metrics


def read_epochs(run: Path) -> list[dict]:
    with open(run / "epochs.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_default_one_row_per_epoch_and_phase(compose_cfg, tmp_path):
    run, m = distill_in_process(compose_cfg, tmp_path)
    rows = read_epochs(run)
    teacher = [r for r in rows if r["phase"] == "teacher/train"]
    student = [r for r in rows if r["phase"] == "distill"]
    assert len(teacher) + len(student) == len(rows)
    (phase,) = m["phases"]
    assert [int(r["epoch"]) for r in student] == list(range(1, phase["epochs_run"] + 1))
    assert 1 <= len(teacher) <= 3
    best = student[phase["best_epoch"] - 1]
    assert float(best["valid_auc"]) == pytest.approx(phase["best_valid"]["auc"], abs=1e-12)
    assert all(float(r["train_loss"]) > 0 and float(r["lr"]) > 0 for r in rows)
    # a second run reuses the cached teacher: no teacher rows
    run2, _ = distill_in_process(compose_cfg, tmp_path)
    assert {r["phase"] for r in read_epochs(run2)} == {"distill"}


def test_logger_none_writes_no_epoch_file(compose_cfg, tmp_path):
    run, m = distill_in_process(compose_cfg, tmp_path, "logger=none")
    assert not (run / "epochs.csv").exists() and m["test"]["auc"] > 0


def test_tensorboard_scalars_read_back(compose_cfg, tmp_path):
    pytest.importorskip("tensorboard", reason="logger=tensorboard needs the tracking extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, m = distill_in_process(compose_cfg, tmp_path, "logger=tensorboard")
    ea = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"distill/valid_auc", "distill/train_loss", "teacher/train/valid_auc", "final/test_auc"} <= tags
    rows = [r for r in read_epochs(run) if r["phase"] == "distill"]
    events = ea.Scalars("distill/valid_auc")
    assert [e.step for e in events] == [int(r["epoch"]) for r in rows]
    assert [e.value for e in events] == pytest.approx([float(r["valid_auc"]) for r in rows], abs=1e-6)
    assert ea.Scalars("final/test_auc")[-1].value == pytest.approx(m["test"]["auc"], abs=1e-6)


@pytest.fixture
def mlflow_client():
    pytest.importorskip("mlflow", reason="logger=mlflow needs the tracking extra")
    from mlflow import MlflowClient

    return lambda out: MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlflow' / 'mlflow.db').resolve()}")


def test_mlflow_run_read_back(compose_cfg, tmp_path, mlflow_client):
    run, m = distill_in_process(compose_cfg, tmp_path, "logger=mlflow", "logger.tags={project: t}")
    client = mlflow_client(tmp_path / "out")
    info = json.loads((run / "mlflow_run.json").read_text())
    r = client.get_run(info["run_id"])
    assert r.info.status == "FINISHED"
    assert r.data.tags["kdrec.stage"] == "distill" and r.data.tags["project"] == "t"
    assert "mlflow.parentRunId" not in r.data.tags  # not a sweep
    p = r.data.params
    assert p["student.name"] == "fm" and p["distiller.name"] == "kd" and p["trainer.epochs"] == "3"
    assert p["dataset.num_rows"] == "4000" and p["logger.name"] == "mlflow"
    assert r.data.metrics["test_auc"] == pytest.approx(m["test"]["auc"], abs=1e-12)
    assert r.data.metrics["teacher_test_auc"] == pytest.approx(m["teacher"]["test"]["auc"], abs=1e-12)
    hist = client.get_metric_history(r.info.run_id, "distill/valid_auc")
    rows = [x for x in read_epochs(run) if x["phase"] == "distill"]
    assert sorted((h.step, h.value) for h in hist) == [(int(x["epoch"]), float(x["valid_auc"])) for x in rows]
    assert client.get_metric_history(r.info.run_id, "teacher/train/train_loss")
    arts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"metrics.json", "epochs.csv", "config_resolved.yaml"} <= arts
    art_root = Path(client.get_experiment(r.info.experiment_id).artifact_location.removeprefix("file://"))
    assert art_root.is_relative_to((tmp_path / "out" / "mlflow").resolve())

    # evaluate run=<dir> records its scores as a run of its own that names the source run (an
    # in-process run has no .hydra/: save its config there as Hydra does)
    from omegaconf import OmegaConf

    from kdrec.stages.evaluate import run as evaluate

    (run / ".hydra").mkdir()
    OmegaConf.save(compose_cfg(*SMOKE, f"paths.root={tmp_path / 'out'}", "logger=mlflow"), run / ".hydra" / "config.yaml")

    ev = evaluate(compose_cfg(f"run={run}", f"paths.root={tmp_path / 'out'}", "logger=mlflow", "device.threads=1"))
    ev_runs = client.search_runs([r.info.experiment_id], "tags.`kdrec.stage` = 'evaluate'")
    assert len(ev_runs) == 1 and ev_runs[0].data.tags["kdrec.source_run"] == str(run.resolve())
    student = next(v for k, v in ev["models"].items() if k.startswith("student"))
    assert ev_runs[0].data.metrics["student_valid_auc"] == pytest.approx(student["valid"]["auc"], abs=1e-12)


def test_mlflow_failed_job_is_recorded_failed(compose_cfg, tmp_path, mlflow_client):
    with pytest.raises(SystemExit):
        distill_in_process(compose_cfg, tmp_path, "logger=mlflow", "dataset=csv",
                           "dataset.files={all: missing.csv}", "dataset.fields=[a]",
                           f"paths.data_root={tmp_path}")
    client = mlflow_client(tmp_path / "out")
    (exp,) = [e for e in client.search_experiments() if e.name == "kdrec"]
    (r,) = client.search_runs([exp.experiment_id])
    assert r.info.status == "FAILED"


def test_bad_logger_settings_are_refused(compose_cfg, tmp_path):
    from kdrec.tracking.session import build_backends
    from kdrec.tracking.base import RunInfo

    cfg = compose_cfg(*SMOKE, "logger=csv", "+logger.filenme=x.csv")
    with pytest.raises(KdrecError, match="filenme"):
        build_backends(cfg, RunInfo("distill", tmp_path, cfg))


def test_every_logger_yaml_names_a_registered_logger(compose_cfg):
    from kdrec.config import config_dir
    from kdrec.tracking import LOGGERS

    conf = Path(config_dir()) / "logger"
    named = {compose_cfg(f"logger={p.stem}").logger.name for p in conf.glob("*.yaml")}
    assert named == set(LOGGERS.names()) == {"csv", "tensorboard", "mlflow", "none"}


def test_csv_of_a_resumed_run_continues_the_earlier_rows(tmp_path):
    """A resumed run keeps the epochs its earlier runs logged (another phase's too); an epoch
    logged again replaces that phase's rows from it on; a run that does not resume starts over."""
    from kdrec.tracking.backends.plain import CsvLogger

    path = tmp_path / "epochs.csv"
    first = CsvLogger(path)
    first.log_epoch("teacher/train", 1, {"train_loss": 0.9})
    for e in (1, 2, 3):  # epoch 3 was logged, but the run died before its checkpoint
        first.log_epoch("distill", e, {"train_loss": 1.0 / e})
    resumed = CsvLogger(path, resume=True)
    resumed.log_epoch("distill", 3, {"train_loss": 0.3, "valid_auc": 0.7})  # a column first seen now
    resumed.log_epoch("distill", 4, {"train_loss": 0.25})
    rows = [(r["phase"], int(r["epoch"]), r["train_loss"], r["valid_auc"]) for r in read_epochs(tmp_path)]
    assert rows == [("teacher/train", 1, "0.9", ""), ("distill", 1, "1.0", ""), ("distill", 2, "0.5", ""),
                    ("distill", 3, "0.3", "0.7"), ("distill", 4, "0.25", "")]
    CsvLogger(path).log_epoch("distill", 1, {"train_loss": 2.0})
    assert [(r["phase"], r["epoch"]) for r in read_epochs(tmp_path)] == [("distill", "1")]
    # a file that cannot be continued is kept aside, not overwritten, and the log starts afresh
    path.write_text("phase,epoch\ndistill,two\n")
    CsvLogger(path, resume=True).log_epoch("distill", 3, {"train_loss": 0.1})
    assert (tmp_path / "epochs.csv.unreadable").read_text() == "phase,epoch\ndistill,two\n"
    assert [(r["phase"], r["epoch"]) for r in read_epochs(tmp_path)] == [("distill", "3")]
