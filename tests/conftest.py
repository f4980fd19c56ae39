"""Shared fixtures: the config composed once per override set, the CLI as a subprocess, data paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from kdrec.config import config_dir

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("KDREC_DATA_DIR", REPO.parent / "shared" / "data"))
KDREC = str(Path(sys.executable).with_name("kdrec"))

# `make test` runs -n N xdist workers on N cores: with torch's default of one thread per core in
# each worker and in each CLI subprocess, threads outnumber cores and OpenMP's barriers wait on
# descheduled threads. One thread per worker; the CLI subprocesses inherit it through the env.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def compose_cfg():
    """compose_cfg(*overrides) -> DictConfig, as the CLI would resolve it (Hydra's compose API)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        yield lambda *overrides: compose("config", overrides=list(overrides))
    GlobalHydra.instance().clear()


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    out = tmp_path / "outputs"
    monkeypatch.setenv("KDREC_OUTPUTS", str(out))
    monkeypatch.setenv("KDREC_RESULTS", str(tmp_path / "results"))  # never the repository's results/
    return out


def run_cli(*args: str, outputs: Path, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "KDREC_OUTPUTS": str(outputs), "KDREC_DATA_DIR": str(DATA_DIR),
           "KDREC_RESULTS": str(outputs.parent / "results")}  # never the repository's results/
    proc = subprocess.run([KDREC, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kdrec {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def cli(outputs):
    return lambda *args, **kw: run_cli(*args, outputs=outputs, **kw)


def latest_run(outputs: Path, stage: str) -> Path:
    runs = sorted((outputs / "runs" / stage).iterdir())
    assert runs, f"no {stage} run under {outputs}"
    return runs[-1]


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def require_data(*parts: str) -> Path:
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set KDREC_DATA_DIR to the folder holding it)")
    return path
