"""`kdrec report` prints one table: mean ± std, the paired test against the student alone and cost
ratios to the teacher; it ends with the Pareto plot's path."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from kdrec.report.collect import main as report
from kdrec.report.significance import paired_t

AUC = {"none": [0.780, 0.785, 0.782], "kd": [0.790, 0.792, 0.793]}
TEACHER = {"valid": {"auc": 0.80, "logloss": 0.47}, "test": {"auc": 0.801, "logloss": 0.47},
           "params": 30_000, "model": "cin", "dir": "/cache/teachers/cin-abc"}


def _job(root: Path, n: int, distiller: str, seed: int, latency: bool) -> None:
    job = root / str(n)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
        ["experiment=quickstart", f"seed={seed}", f"distiller={distiller}", "device.threads=1"]))
    auc = AUC[distiller][seed - 1]
    student = {"flops_per_sample": 8_792.0, "params": 13_141}
    teacher = {"flops_per_sample": 483_124.0, "params": 30_000}
    m = {"valid": {"auc": auc, "logloss": 0.5}, "test": {"auc": auc, "logloss": 0.5}, "params": 13_141,
         "model": "dagfm", "distiller": distiller, "dataset": "synthetic", "seed": seed,
         "teacher": TEACHER, "flops": {"student": student, "teacher": teacher,
                                       "ratios": {"flops_per_sample_ratio": 8_792 / 483_124}}}
    (job / "metrics.json").write_text(json.dumps(m))
    if latency:  # what `kdrec benchmark-flops run=<job>` adds
        f = {"student": {**student, "latency_ms_b1": 0.1, "latency_ms_b4096": 5.0},
             "teacher": {**teacher, "latency_ms_b1": 0.2, "latency_ms_b4096": 100.0},
             "ratios": {"flops_per_sample_ratio": 8_792 / 483_124, "latency_ms_b1_ratio": 0.5,
                        "latency_ms_b4096_ratio": 0.05}}
        (job / "flops.json").write_text(json.dumps(f))


def test_one_table_with_paired_test_ratios_and_the_pareto_path_last(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    n = 0
    for seed in (1, 2, 3):
        for distiller in ("kd", "none"):
            _job(sweep, n, distiller, seed, latency=seed == 1)
            n += 1
    summary = report([str(sweep)])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]

    # rows: teacher, then the student alone, then the distilled student
    order = [r["config"] for r in summary.iter_rows(named=True)]
    assert order == ["teacher cin", "distiller=none experiment=quickstart", "distiller=kd experiment=quickstart"]
    kd_line = next(line for line in lines if "distiller=kd " in line)
    expected = paired_t(AUC["kd"], AUC["none"])
    assert f"{expected['diff_mean']:+.4f}" in kd_line and f"{expected['p']:.3g}" in kd_line
    assert f"{sum(AUC['kd']) / 3:.4f} ± " in kd_line
    # ratios to the teacher: FLOPs from every job, latency from the job that was benchmarked
    assert "1.82%" in kd_line and "50.0%" in kd_line and "5.00%" in kd_line
    assert "Δ test_auc vs alone" in out and "FLOPs / teacher" in out
    # the Pareto plot's path is the last line, and the file is there
    assert lines[-1].startswith("Pareto plot: ")
    assert Path(lines[-1].split(": ", 1)[1]).is_file()
    # the full significance table (both metrics, t) still goes to summary.md
    md = (sweep / "summary.md").read_text()
    assert "Paired t-test" in md and "test_logloss" in md
    assert pl.read_csv(sweep / "significance.csv").height == 2


def test_a_report_without_teacher_or_twin_has_no_ratio_or_test_columns(tmp_path, capsys):
    job = tmp_path / "run"
    job.mkdir()
    (job / "metrics.json").write_text(json.dumps(
        {"valid": {"auc": 0.7}, "test": {"auc": 0.71}, "params": 10, "model": "fm", "distiller": "none",
         "dataset": "synthetic", "seed": 1}))
    report([str(job)])
    out = capsys.readouterr().out
    assert "0.7100" in out
    assert "vs alone" not in out and "/ teacher" not in out


@pytest.mark.parametrize("v, text", [(0.0182, "1.82%"), (0.5, "50.0%"), (None, "-")])
def test_ratio_cells(v, text):
    from kdrec.report.collect import _pct

    assert _pct(v) == text
