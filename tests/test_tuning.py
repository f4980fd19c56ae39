"""`hydra/sweeper=optuna` on kdrec stages: the `tune_kd` preset runs 3 trials of a distiller's
weight and temperature for one fixed teacher (pretrained once); with `logger=mlflow` the trials are
children of one parent run holding the best value. A direction that contradicts the task's
monitor is refused."""

from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf

from conftest import read_metrics

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra/sweeper=optuna needs the tune extra")

FAST = ["dataset.num_rows=4000", "trainer.epochs=3", "device.threads=1"]


def test_tune_kd_three_trials_one_teacher_one_parent_run(cli, outputs):
    mlflow = pytest.importorskip("mlflow", reason="the parent-run check needs the tracking extra")
    proc = cli("distill", "-m", "experiment=[smoke,tune_kd]", "hydra.sweeper.n_trials=3", "logger=mlflow",
               *FAST, timeout=600)
    sweep = sorted((outputs / "multirun" / "distill").iterdir())[-1]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1", "2"]
    trials = []
    for j in jobs:
        cfg = OmegaConf.load(j / ".hydra" / "config.yaml")
        assert 0.01 <= cfg.distiller.alpha <= 10 and 1 <= cfg.distiller.temperature <= 8
        trials.append((cfg.distiller.alpha, cfg.distiller.temperature, read_metrics(j)["valid"]["auc"]))
    assert len({(a, t) for a, t, _ in trials}) == 3  # three different settings
    # one teacher for all trials: trained by the first, reused by the others
    teachers = [p for p in (outputs / "teachers" / "synthetic").iterdir() if not p.name.startswith(".")]
    assert len(teachers) == 1
    logs = [(j / "distill.log").read_text() for j in jobs]
    assert sum("pretraining it first" in t for t in logs) == 1
    assert {read_metrics(j)["teacher"]["dir"] for j in jobs} == {str(teachers[0])}
    # the sweeper saw each trial's valid AUC (the stage's return value)
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert math.isclose(best.best_value, max(a for _, _, a in trials), rel_tol=0, abs_tol=1e-12)
    assert "Best value" in proc.stdout + proc.stderr

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(outputs / 'mlflow' / 'mlflow.db').resolve()}")
    parent_id = json.loads((sweep / ".mlflow_parent.json").read_text())["run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_value"] == pytest.approx(best.best_value, abs=1e-12)
    assert "search.distiller.alpha" in parent.data.params
    arts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"optimization_results.yaml", "summary.md"} <= arts
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert len(children) == 3
    by_dir = {c.data.tags["kdrec.run_dir"]: c for c in children}
    for j, (alpha, temp, auc) in zip(jobs, trials):
        c = by_dir[str(j.resolve())]
        assert c.info.status == "FINISHED"
        assert float(c.data.params["distiller.alpha"]) == pytest.approx(alpha)
        assert c.data.metrics["valid_auc"] == pytest.approx(auc, abs=1e-12)
    arts = {a.path for a in client.list_artifacts(children[0].info.run_id)}
    assert {"metrics.json", "epochs.csv", "distill.log", "hydra"} <= arts
    assert {a.path for a in client.list_artifacts(children[0].info.run_id, "hydra")} >= {
        "hydra/config.yaml", "hydra/overrides.yaml"}


def test_wrong_direction_is_refused_before_training(cli, outputs):
    proc = cli("pretrain-teacher", "-m", "experiment=smoke", "hydra/sweeper=optuna",
               "hydra.sweeper.direction=minimize", "hydra.sweeper.n_trials=1", *FAST, check=False)
    err = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, err[-2000:]
    assert "hydra.sweeper.direction=minimize, but the monitored metric valid auc is better when higher" in err
    assert not (outputs / "teachers").exists()  # refused before anything was trained
