"""docs/extending.md is true: its `# file:` blocks, written into a copy of src/ and conf/, add a
model (FwFM), a distiller (soft-label KD), a dataset (MovieLens-1M) and a table that the CLI runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import REPO

BLOCK = re.compile(r"```(?:python|yaml)\n# file: (\S+)\n(.*?)```", re.S)
EXPECTED = {"src/kdrec/models/ctr/fwfm.py", "conf/student/fwfm.yaml", "src/kdrec/distill/ctr/kd_soft.py",
            "conf/distiller/kd_soft.yaml", "src/kdrec/data/sources/movielens_1m.py",
            "conf/dataset/movielens_1m.yaml", "conf/table/fwfm.yaml"}


def write_ml1m(root: Path, bad_line: int | None = None) -> None:
    """A small folder in GroupLens' MovieLens-1M format; ratings follow user and movie biases."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    n_users, n_movies, n = 120, 80, 4000
    ages = [1, 18, 25, 35, 45, 50, 56]
    (root / "users.dat").write_text("".join(
        f"{u}::{'MF'[u % 2]}::{ages[u % 7]}::{u % 21}::{10000 + 37 * u}\n" for u in range(1, n_users + 1)))
    genres = ["Action", "Comedy", "Drama", "Children's", "Sci-Fi"]
    titles = [f"Movie {m}: Part {m % 3} ({1980 + m % 20})" for m in range(1, n_movies + 1)]
    titles[4] = "Misérables, Les (1995)"  # Latin-1, as GroupLens' file
    (root / "movies.dat").write_bytes("".join(
        f"{m}::{titles[m - 1]}::{genres[m % 5]}|{genres[(m * 7) % 5]}\n" for m in range(1, n_movies + 1)
    ).encode("latin-1"))
    ub, mb = rng.normal(0, 1, n_users + 1), rng.normal(0, 1, n_movies + 1)
    u, m = rng.integers(1, n_users + 1, n), rng.integers(1, n_movies + 1, n)
    r = np.clip(np.rint(3.3 + ub[u] + mb[m] + rng.normal(0, 0.5, n)), 1, 5).astype(int)
    lines = [f"{a}::{b}::{c}::{978300000 + i}\n" for i, (a, b, c) in enumerate(zip(u, m, r))]
    if bad_line is not None:
        a, b, _, t = lines[bad_line - 1].split("::")
        lines[bad_line - 1] = f"{a}::{b}::9::{t}"
    (root / "ratings.dat").write_text("".join(lines))


def test_extending_walkthrough_runs(tmp_path):
    doc = (REPO / "docs" / "extending.md").read_text()
    blocks = BLOCK.findall(doc)
    assert {p for p, _ in blocks} == EXPECTED
    copy = tmp_path / "project"
    shutil.copytree(REPO / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "conf", copy / "conf")
    for path, body in blocks:
        assert not (copy / path).exists(), f"{path} already exists: the example must add something new"
        (copy / path).write_text(f"# file: {path}\n{body}")
    write_ml1m(tmp_path / "data" / "ml-1m")
    write_ml1m(tmp_path / "bad" / "ml-1m", bad_line=5)
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "KDREC_OUTPUTS": str(tmp_path / "outputs"),
           "KDREC_RESULTS": str(tmp_path / "results"), "KDREC_DATA_DIR": str(tmp_path / "data")}

    def kdrec(*args, check=True):
        p = subprocess.run([sys.executable, "-m", "kdrec.cli", *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        if check:
            assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
        return p

    where = subprocess.run([sys.executable, "-c", "import kdrec; print(kdrec.__file__)"], env=env,
                           capture_output=True, text=True, cwd=tmp_path).stdout
    assert str(copy / "src") in where  # the copy is what runs, not the installed package

    run = tmp_path / "outputs" / "run"
    kdrec("distill", "dataset=movielens_1m", "teacher=dnn", "student=fwfm", "distiller=kd_soft",
          "trainer.epochs=2", "device.threads=1", "trainer.progress=false", f"hydra.run.dir={run}")
    m = json.loads((run / "metrics.json").read_text())
    assert (m["model"], m["distiller"], m["dataset"]) == ("fwfm", "kd_soft", "movielens_1m")
    assert 0.6 < m["test"]["auc"] <= 1.0  # the biases are learnable: well above chance
    assert m["flops"]["student"]["flops_matmul"] > 0  # the pairwise einsum is counted

    bad = kdrec("distill", "experiment=smoke", "student=fwfm", "distiller=kd_soft", "distiller.alpha=2",
                check=False)
    assert bad.returncode == 2 and "distiller.alpha" in bad.stderr and "Traceback" not in bad.stderr
    broken = kdrec("data", "dataset=movielens_1m", f"paths.data_root={tmp_path / 'bad'}", check=False)
    out = " ".join((broken.stdout + broken.stderr).split())
    assert broken.returncode == 2 and "ratings.dat: line 5" in out and "'9'" in out, out

    table = kdrec("table", "fwfm", "--seeds", "1", "--latency", "skip")
    assert "| FwFM + soft-label KD | 1 |" in table.stdout
    assert len(list((tmp_path / "results" / "fwfm").rglob("*.json"))) == 4
