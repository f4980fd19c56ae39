"""Two torchrun workers (gloo, CPU) give the same student as one process on the same data."""

import pytest

from conftest import latest_run, read_metrics


def test_ddp_two_processes_match_single_process(cli, outputs):
    cli("distill", "experiment=smoke", "distiller=kd")
    single = read_metrics(latest_run(outputs, "distill"))
    cli("distill", "experiment=smoke", "distiller=kd", "device=ddp", "device.nproc=2")
    run = latest_run(outputs, "distill")
    multi = read_metrics(run)
    assert multi["distributed"]["world_size"] == 2
    assert (run / "student.pt").is_file() and (run / "ddp_rank0.log").is_file()
    assert not list(run.glob("rank*")), "no per-rank output directories"
    for split in ("valid", "test"):
        for k in ("auc", "logloss"):
            assert multi[split][k] == pytest.approx(single[split][k], abs=1e-4)
    assert multi["teacher"]["test"] == single["teacher"]["test"]  # the same cached teacher
    # rank 0's epochs reach the run's logger (csv): one row per epoch run of each phase
    import polars as pl

    rows = pl.read_csv(run / "epochs.csv")
    runs_per_phase = {p["phase"]: p["epochs_run"] for p in multi["phases"]}
    assert dict(rows.group_by("phase").len().iter_rows()) == runs_per_phase
