"""`kdrec table --park`: a job stopped on one machine goes on from results/ on another (a fresh
outputs tree) and ends with the numbers of a run never stopped; a copy whose checkpoints do not
belong together is refused; local checkpoints win over parked ones."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import kdrec.train.loop as loop
from conftest import run_cli
from kdrec.errors import KdrecError
from kdrec.stages import distill
from kdrec.stages import table as table_stage
from kdrec.table import parked
from kdrec.table.jobs import plan
from kdrec.table.spec import load_table

THREADS = ["--threads", "1", "--latency", "skip"]


class Interrupted(Exception):
    pass


def _job():
    return plan(load_table("smoke"), [], seeds=[1], rows=["kd"]).jobs[0]


def test_a_parked_job_resumes_on_a_fresh_machine_as_if_never_stopped(compose_cfg, outputs, tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.chdir(tmp_path)
    job = _job()
    # machine 1: the job's own run, stopped after its second student epoch
    monkeypatch.setattr(loop, "_after_epoch", lambda p, e: (_ for _ in ()).throw(Interrupted)
                        if (p, e) == ("distill", 1) else None)
    cfg = compose_cfg(*job.overrides, f"seed={job.seed}", "resume=true", "device.threads=1")
    with pytest.raises(Interrupted):
        distill.run.__wrapped__(cfg)
    monkeypatch.setattr(loop, "_after_epoch", lambda *a: None)
    assert parked.live_dir(job) is not None, "the stopped run keeps its checkpoints in the job's work dir"

    table_stage.run("smoke", [], seeds=["1"], rows=["kd"], park=True)  # in-process: a CLI start-up saved
    out = capsys.readouterr().out
    assert "kd seed 1: parked at distill epoch 2" in out, out
    entry = parked.entry(job)
    assert {p.name for p in entry.iterdir()} >= {"distill_last.pt", "distill_best.pt", "parked.json"}
    assert not job.result_path.exists()

    # machine 2: nothing but the repository's results/
    fresh = tmp_path / "outputs2"
    monkeypatch.setenv("KDREC_OUTPUTS", str(fresh))
    table_stage.run("smoke", [], seeds=["1"], rows=["kd"], dry_run=True)
    assert "parked in results/ at distill epoch 2" in capsys.readouterr().out
    resumed = run_cli("table", "smoke", "--rows", "kd", "--seeds", "1", *THREADS, outputs=fresh)
    assert "resumes from its parked checkpoints (distill epoch 2" in resumed.stdout, resumed.stdout
    assert "resuming at epoch 3" in (fresh / "tables" / "smoke" / "kd" / job.run_dir.name / "job.log").read_text()
    assert not entry.exists(), "a finished job's parked checkpoints are deleted"
    got = json.loads(job.result_path.read_text())["metrics"]

    # a run never stopped, elsewhere
    ref_out = tmp_path / "ref" / "outputs"
    run_cli("table", "smoke", "--rows", "kd", "--seeds", "1", *THREADS, outputs=ref_out)
    ref = json.loads((tmp_path / "ref" / "results" / "smoke" / "kd" / job.result_path.name).read_text())["metrics"]
    assert got["phases"][0]["epochs_run"] == ref["phases"][0]["epochs_run"]
    assert got["phases"][0]["best_epoch"] == ref["phases"][0]["best_epoch"]
    for split in ("valid", "test"):
        for k in ("auc", "logloss"):
            assert got[split][k] == pytest.approx(ref[split][k], abs=1e-6), (split, k)


def _fake_checkpoints(d, last_best: int, best: int) -> None:
    d.mkdir(parents=True)
    torch.save({"epoch": 5, "best_epoch": last_best}, d / "distill_last.pt")
    torch.save({"epoch": best, "modules": {}}, d / "distill_best.pt")


def test_parking_refuses_checkpoints_that_do_not_belong_together(outputs, monkeypatch):
    job = _job()
    monkeypatch.setattr(parked, "TRIES", 1)
    _fake_checkpoints(job.work_dir / "run-a", last_best=3, best=2)  # an epoch ended between the two copies
    with pytest.raises(KdrecError, match="is not epoch 4, which distill_last.pt calls best"):
        parked.park(job)
    assert not parked.entry(job).exists() and not list(parked.entry(job).parent.glob(".*"))


def test_local_checkpoints_win_and_an_incomplete_entry_is_never_restored(outputs):
    job = _job()
    _fake_checkpoints(job.work_dir / "run-a", last_best=3, best=3)
    got = parked.park(job)
    assert got is not None and got.at == "distill epoch 6" and parked.parked(job)["work"] == job.work_dir.name
    assert parked.restore(job) is None, "this machine has checkpoints of its own: they are newer"
    shutil.rmtree(job.work_dir)
    assert parked.restore(job) == "distill epoch 6"
    [restored] = [d for d in job.work_dir.iterdir() if d.is_dir()]
    assert sorted(p.name for p in restored.iterdir()) == ["distill_best.pt", "distill_last.pt"]
    shutil.rmtree(job.work_dir)
    (parked.entry(job) / parked.MANIFEST).unlink()  # a copy cut short
    assert parked.parked(job) is None and parked.restore(job) is None
