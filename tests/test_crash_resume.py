"""A killed teacher pretraining leaves no teacher behind (the cache entry is complete or absent),
and the next run resumes it from its work directory instead of starting over."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from conftest import DATA_DIR, KDREC, REPO

SLOW_TEACHER = ["experiment=smoke", "dataset.num_rows=120000", "teacher.hidden=[256,256]",
                "+teacher.train.epochs=6", "+teacher.train.patience=10", "device.threads=1"]


def test_killed_pretraining_leaves_nothing_and_resumes(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "KDREC_OUTPUTS": str(out), "KDREC_DATA_DIR": str(DATA_DIR), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([KDREC, "pretrain-teacher", *SLOW_TEACHER], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in p.stdout:
        seen.append(line)
        if "train epoch 2/" in line:
            p.send_signal(signal.SIGKILL)
            break
    p.wait(60)
    assert p.returncode == -signal.SIGKILL, "".join(seen)[-2000:]
    teachers = out / "teachers" / "synthetic"
    assert not [d for d in teachers.iterdir() if not d.name.startswith(".")], \
        "a killed pretraining must not leave a teacher that later runs would load"
    assert list((out / "work").glob("teacher-*/train_last.pt")), "its epochs are kept for resuming"

    done = subprocess.run([KDREC, "pretrain-teacher", *SLOW_TEACHER], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "resuming at epoch" in log
    [tdir] = [d for d in teachers.iterdir() if not d.name.startswith(".")]
    assert json.loads((tdir / "metrics.json").read_text())["test"]["auc"] > 0.6
    assert not list((out / "work").glob("teacher-*")), "the finished teacher's work directory is removed"
