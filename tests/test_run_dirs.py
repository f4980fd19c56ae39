"""Run directories are self-contained: `evaluate`, `benchmark-flops` and `export` with `run=` read
the data where the run read it (its resolved `paths.data_root`, made absolute against the run's
working directory) unless the command line sets `paths.data_root`; their errors name the stage."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import KDREC, REPO, latest_run, read_metrics


def write_table(raw) -> None:
    raw.mkdir(parents=True)
    lines = ["label,user,item"] + [f"{int((u + i) % 3 == 0)},u{u},i{i}" for u in range(40) for i in range(30)]
    (raw / "clicks.csv").write_text("\n".join(lines) + "\n")


def test_run_based_stages_use_the_runs_own_data_root(tmp_path, cli, outputs):
    raw = tmp_path / "my data"
    write_table(raw)
    rel = os.path.relpath(raw, REPO)  # relative to the run's working directory (the repo)
    cli("distill", "dataset=csv", "dataset.files={all: clicks.csv}", "dataset.fields=[user,item]",
        f"paths.data_root={rel}", "teacher.hidden=[16]", "trainer.epochs=2", "device.threads=1",
        "trainer.progress=false")
    run = latest_run(outputs, "distill")
    m = read_metrics(run)

    # evaluate from another working directory, without the data override
    env = {**os.environ, "KDREC_OUTPUTS": str(outputs), "KDREC_DATA_DIR": str(tmp_path / "elsewhere")}
    proc = subprocess.run([KDREC, "evaluate", f"run={run}", "device.threads=1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ev = json.loads((latest_run(outputs, "evaluate") / "evaluation.json").read_text())
    student = next(v for k, v in ev["models"].items() if k.startswith("student"))
    assert abs(student["test"]["auc"] - m["test"]["auc"]) < 1e-9
    cli("benchmark-flops", f"run={run}", "device.threads=1")
    assert json.loads((run / "flops.json").read_text())["dataset"] == "csv"
    cli("export", f"run={run}", "device.threads=1")
    assert (latest_run(outputs, "export") / "export.json").is_file()

    # a data root given on the command line wins (and a wrong one is a clear error)
    bad = cli("evaluate", f"run={run}", f"paths.data_root={tmp_path / 'nowhere'}", check=False)
    assert bad.returncode == 2 and "nowhere" in bad.stdout + bad.stderr


def test_run_stage_errors_name_the_stage(tmp_path, compose_cfg, caplog):
    import importlib

    import pytest

    def error_of(stage: str, *overrides: str) -> str:
        module = importlib.import_module(f"kdrec.stages.{stage.replace('-', '_')}")
        caplog.clear()
        with pytest.raises(SystemExit) as exc:
            module.run(compose_cfg(f"paths.root={tmp_path / 'out'}", *overrides))
        assert exc.value.code == 2
        return caplog.records[-1].getMessage()

    assert error_of("export") == "export needs run=<run directory> (a finished distill run)"
    for stage in ("evaluate", "benchmark-flops", "export"):
        assert error_of(stage, f"run={tmp_path}").startswith(f"{stage}: {tmp_path} is not a kdrec run directory")
