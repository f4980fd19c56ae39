"""scripts/kd_dagfm_table.py: the table is rebuilt from metrics.json / flops.json alone, with
mean ± std over seeds, the gap to the teacher and the paper's claim checked per row."""

from __future__ import annotations

import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kd_dagfm_table.py"


def _load():
    spec = importlib.util.spec_from_file_location("kd_dagfm_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_table_from_metrics_files(tmp_path, capsys):
    pytest.importorskip("polars")
    root = tmp_path / "kd_dagfm" / "p"
    flops = {"student": {"flops_per_sample": 20.0},
             "ratios": {"flops_per_sample_ratio": 0.2, "params_ratio": 0.5, "dense_params_ratio": 0.1}}
    for seed, (t_auc, s_auc, a_auc) in enumerate([(0.970, 0.9695, 0.94), (0.972, 0.9705, 0.95)], 1):
        _write(root / "teacher" / f"seed{seed}" / "metrics.json",
               {"model": "crossnet", "test": {"auc": t_auc, "logloss": 0.2}, "params": 10})
        _write(root / "kd_dagfm" / f"seed{seed}" / "metrics.json",
               {"model": "dagfm", "test": {"auc": s_auc, "logloss": 0.3}, "params": 5, "flops": flops})
        _write(root / "alone" / f"seed{seed}" / "metrics.json",
               {"model": "dagfm", "test": {"auc": a_auc, "logloss": 0.4}, "params": 5,
                "flops": {"student": {"flops_per_sample": 20.0}}})
    _write(root / "flops" / "flops.json",
           {"teacher": {"flops_per_sample": 100.0, "latency_ms_b4096": 2.0},
            "student": {"flops_per_sample": 20.0, "latency_ms_b4096": 1.0},
            "ratios": {"latency_ms_b1_ratio": 0.5, "latency_ms_b4096_ratio": 0.5}})
    mod = _load()
    mod.table(Namespace(root=str(tmp_path / "kd_dagfm"), out=str(tmp_path / "o")))
    import polars as pl

    df = pl.read_csv(tmp_path / "o" / "kd_dagfm_results.csv")
    rows = {r["method"]: r for r in df.iter_rows(named=True)}
    assert list(df["method"]) == ["teacher", "alone", "kd_dagfm"]  # methods in their fixed order
    assert rows["teacher"]["auc"] == pytest.approx(0.971) and rows["teacher"]["seeds"] == 2
    assert rows["kd_dagfm"]["auc"] == pytest.approx(0.97)
    assert rows["kd_dagfm"]["auc_std"] == pytest.approx(0.000707107, rel=1e-4)
    assert rows["kd_dagfm"]["auc_vs_teacher"] == pytest.approx(-0.001)
    assert rows["kd_dagfm"]["claim_holds"] is True  # gap -0.001 exactly, FLOPs ratio 20%
    assert rows["alone"]["claim_holds"] is False and rows["alone"]["flops_ratio"] == pytest.approx(0.2)
    assert rows["kd_dagfm"]["latency_b4096_ratio"] == pytest.approx(0.5)
    md = (tmp_path / "o" / "kd_dagfm_results.md").read_text()
    assert "0.9700 ± 0.0007" in md and "| yes |" in md
