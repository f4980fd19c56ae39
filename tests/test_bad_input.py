"""Bad settings and bad data are refused before any work with one `kdrec error:` line naming the
key (or file) and what is allowed, exit code 2, and nothing cached."""

from __future__ import annotations

import pytest

from conftest import run_cli

SMOKE = ["experiment=smoke", "device.threads=1"]


def refused(outputs, *args, expect: str):
    proc = run_cli(*args, outputs=outputs, check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("kdrec error:")]
    assert len(lines) == 1 and expect in lines[0], err[-2000:]
    assert not (outputs / "teachers").exists() or not any(
        p for p in (outputs / "teachers").rglob("checkpoint.pt")), "nothing may be cached"
    return lines[0]


@pytest.mark.parametrize("override,expect", [
    ("trainer.batch_size=-5", "trainer.batch_size"),
    ("trainer.batch_size=0", "trainer.batch_size"),
    ("trainer.lr=0", "trainer.lr"),
    ("trainer.lr=-1", "trainer.lr"),
    ("trainer.lr=1e6", "trainer.lr"),
    ("trainer.lr=1e30", "trainer.lr"),
    ("trainer.epochs=abc", "trainer.epochs"),
    ("seed=abc", "config.seed"),
    ("device.threads=-1", "device.threads"),
    ("teacher.embed_dim=0", "teacher.embed_dim"),
    ("student.embed_dim=0", "student.embed_dim"),
    ("+student.train.patience=0", "trainer.patience"),
    ("trainer.precision=fp8", "trainer.precision"),
])
def test_invalid_setting_refused_before_work(outputs, override, expect):
    line = refused(outputs, "distill", *SMOKE, override, expect=expect)
    assert "allowed" in line or "not a valid" in line


def test_bad_setting_refused_by_pretrain_teacher_too(outputs):
    refused(outputs, "pretrain-teacher", *SMOKE, "trainer.lr=0", expect="trainer.lr")


def test_all_zero_labels_named_before_training(outputs, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = "\n".join(f"0,{i % 7},{i % 5}" for i in range(300))
    (raw / "zeros.csv").write_text("label,a,b\n" + rows + "\n")
    refused(outputs, "distill", "device.threads=1", "dataset=csv", "distiller=none", f"paths.data_root={raw}",
            "dataset.fields=[a,b]", "dataset.files={all: zeros.csv}", expect="every label of the train split is 0")


def test_one_interaction_per_user_is_refused(outputs, tmp_path):
    f = tmp_path / "inter.csv"
    f.write_text("user,item\n" + "\n".join(f"u{i},i{i % 40}" for i in range(200)) + "\n")
    refused(outputs, "distill", "teacher=mf", "student=mf", "distiller=none", "dataset=interactions",
            f"dataset.path={f}", expect="split is empty")


def test_evaluate_and_benchmark_refuse_a_killed_distill_run(outputs, tmp_path):
    run = tmp_path / "killed"
    (run / ".hydra").mkdir(parents=True)
    proc = run_cli("distill", *SMOKE, "--cfg", "job", outputs=outputs)
    (run / ".hydra" / "config.yaml").write_text(proc.stdout)  # the config of a run that never finished
    for stage in ("evaluate", "benchmark-flops"):
        refused(outputs, stage, f"run={run}", expect="no finished run")
