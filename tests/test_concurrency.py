"""Concurrent runs never corrupt a shared cache: one uncached teacher asked for by three processes
at once is trained once and every run records exactly the cached teacher; identical runs started
together each finish; the README's parallel joblib sweep leaves teacher logits that match the
cached checkpoint exactly."""

from __future__ import annotations

import json
import os
import subprocess

import torch

from conftest import DATA_DIR, KDREC, REPO

# big enough that the teacher trains for a few seconds, so the three processes overlap
TEACHER = ["experiment=smoke", "dataset.num_rows=40000", "+teacher.train.epochs=8", "device.threads=1"]


def start(outputs, *args):
    env = {**os.environ, "KDREC_OUTPUTS": str(outputs), "KDREC_DATA_DIR": str(DATA_DIR)}
    return subprocess.Popen([KDREC, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(procs) -> list[str]:
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return logs


def teacher_dirs(outputs):
    return [p for p in (outputs / "teachers" / "synthetic").iterdir() if not p.name.startswith(".")]


def test_three_processes_one_teacher_trained_once(tmp_path):
    out = tmp_path / "out"
    procs = [start(out, "distill", *TEACHER, "teacher_seed=7", f"seed={s}", f"hydra.run.dir={tmp_path / str(s)}")
             for s in (1, 2, 3)]
    logs = finish(procs)
    assert sum("pretraining it first" in log for log in logs) == 1, "the teacher is trained once"
    [tdir] = teacher_dirs(out)
    cached = json.loads((tdir / "metrics.json").read_text())
    for s in (1, 2, 3):
        m = json.loads((tmp_path / str(s) / "metrics.json").read_text())
        assert m["teacher"]["valid"] == cached["valid"] and m["teacher"]["test"] == cached["test"]
        assert m["teacher"]["dir"] == str(tdir)


def test_identical_runs_started_together_both_finish(tmp_path):
    out = tmp_path / "out"
    procs = [start(out, "distill", "experiment=smoke", "device.threads=1", f"hydra.run.dir={tmp_path / r}")
             for r in ("a", "b")]
    finish(procs)
    a, b = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("a", "b"))
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    assert not list((out / "work").rglob("*.pt")), "each run cleaned its own work directory"


def test_joblib_sweep_leaves_logits_matching_the_checkpoint(tmp_path, compose_cfg):
    out = tmp_path / "out"
    p = start(out, "distill", "-m", *TEACHER, "student.embed_dim=4,8", "hydra/launcher=joblib",
              "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    finish([p])
    [tdir] = teacher_dirs(out)
    cached = json.loads((tdir / "metrics.json").read_text())
    for job in ("0", "1"):
        m = json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())
        assert m["teacher"]["test"] == cached["test"]
    # the cached logits are the cached checkpoint's predictions, bit for bit
    from kdrec.runtime import build_task, load_data
    from kdrec.teachers import get_teacher

    cfg = compose_cfg(*[o for o in TEACHER if o != "device.threads=1"], f"paths.root={out}")
    data = load_data(cfg)
    task = build_task(cfg, data, torch.device("cpu"), 1024)
    teacher = get_teacher(cfg, data, task, train_if_missing=False)
    assert teacher.dir == tdir
    logits = torch.load(tdir / "cache" / "logits_train.pt", weights_only=True)["value"]
    assert torch.equal(logits, task.predict(teacher.model, "train"))
