"""Slow, real data: the paper's CrossNet -> DAGFM-outer setting on Frappe_x1 (one seed, ~10 min on
one CPU core). Skips when ../shared/data/frappe_x1 is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA = Path(os.environ.get("KDREC_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.mark.slow
def test_kd_dagfm_crossnet_frappe(tmp_path, monkeypatch, compose_cfg):
    if not (DATA / "frappe_x1" / "train.csv").is_file():
        pytest.skip(f"frappe_x1 not found under {DATA} (set KDREC_DATA_DIR)")
    from kdrec.stages.distill import run

    monkeypatch.setenv("KDREC_OUTPUTS", str(tmp_path / "out"))
    monkeypatch.setenv("KDREC_DATA_DIR", str(DATA))
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    m = run(compose_cfg("experiment=frappe_crossnet_dagfm", "seed=1", "trainer.progress=false",
                        f"paths.data_root={DATA}"))
    teacher_auc, student_auc = m["teacher"]["test"]["auc"], m["test"]["auc"]
    assert teacher_auc == pytest.approx(0.9729, abs=0.003)  # BARS CrossNetv2_frappe_x1
    assert student_auc >= teacher_auc - 0.002
    assert m["flops"]["ratios"]["flops_per_sample_ratio"] <= 0.215
