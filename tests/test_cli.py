"""CLI round trips of every stage, on the smoke experiment (a few seconds each)."""

import json

from conftest import latest_run, read_metrics


def test_distill_smoke_writes_contract_and_reuses_teacher(cli, outputs):
    first = cli("distill", "experiment=smoke")
    run = latest_run(outputs, "distill")
    m = read_metrics(run)
    for split in ("valid", "test"):
        assert set(m[split]) >= {"auc", "logloss"}
        assert set(m["teacher"][split]) >= {"auc", "logloss"}
    assert m["params"] > 0 and m["train_seconds"] >= 0
    assert {"flops_per_sample", "params"} <= set(m["flops"]["student"])
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "distill.log").is_file()
    import torch

    state = torch.load(run / "student.pt", weights_only=True)
    assert "state_dict" in state
    assert "pretraining it first" in first.stderr + first.stdout
    second = cli("distill", "experiment=smoke")
    log = second.stderr + second.stdout
    assert "reusing cached checkpoint" in log and "pretraining it first" not in log
    assert len([p for p in (outputs / "teachers" / "synthetic").iterdir() if not p.name.startswith(".")]) == 1


def test_multirun_makes_one_job_dir_per_seed(cli, outputs):
    # a parallel local sweep (joblib launcher); the sweep-end callback writes the report itself
    cli("distill", "-m", "experiment=smoke", "seed=1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    sweep = sorted((outputs / "multirun" / "distill").iterdir())[-1]
    assert (sweep / "summary.md").is_file(), "the sweep-end callback should have written the report"
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    seeds = {read_metrics(j)["seed"] for j in jobs}
    assert seeds == {1, 2}
    # one teacher per seed (teacher_seed follows seed)
    assert len([p for p in (outputs / "teachers" / "synthetic").iterdir() if not p.name.startswith(".")]) == 2
    report = cli("report", str(sweep))
    assert "mean ± std" in report.stdout
    assert (sweep / "results.parquet").is_file() and (sweep / "pareto.png").is_file()


def test_unknown_option_lists_valid_ones_without_traceback(cli):
    proc = cli("distill", "teacher=nope", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Available options in 'teacher'" in out and "dnn" in out
    assert "Traceback" not in out


def test_misspelled_key_fails_cleanly(cli):
    proc = cli("distill", "experiment=smoke", "+student.embed_dimm=4", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "embed_dimm" in out and "Traceback" not in out


def test_help_and_cfg_job(cli):
    h = cli("distill", "-h")
    assert "teacher:" in h.stdout and "distiller:" in h.stdout
    job = cli("distill", "experiment=smoke", "--cfg", "job")
    assert "student:" in job.stdout and "num_rows: 12000" in job.stdout


def test_pretrain_evaluate_benchmark_round_trip(cli, outputs):
    cli("pretrain-teacher", "experiment=smoke")
    tm = read_metrics(latest_run(outputs, "pretrain_teacher"))
    cli("distill", "experiment=smoke")
    run = latest_run(outputs, "distill")
    dm = read_metrics(run)
    assert dm["teacher"]["test"] == tm["test"]  # the same cached teacher
    ev = cli("evaluate", f"run={run}")
    res = json.loads((latest_run(outputs, "evaluate") / "evaluation.json").read_text())
    student = next(v for k, v in res["models"].items() if k.startswith("student"))
    assert abs(student["test"]["auc"] - dm["test"]["auc"]) < 1e-9
    assert "teacher" in ev.stdout
    cli("benchmark-flops", f"run={run}")
    fl = json.loads((run / "flops.json").read_text())
    for role in ("teacher", "student"):
        assert {"flops_per_sample", "params", "latency_ms_b1", "latency_ms_b4096"} <= set(fl[role])
    assert 0 < fl["ratios"]["flops_per_sample_ratio"] < 1


def test_evaluate_without_run_is_a_clear_error(cli):
    proc = cli("evaluate", check=False)
    assert proc.returncode != 0 and "run=<run directory>" in proc.stdout + proc.stderr


def test_benchmark_latency_alternates_models_and_keeps_the_median():
    from kdrec.stages.benchmark_flops import interleaved_latency

    calls = []
    figures = {"teacher": iter([5.0, 1.0, 9.0]), "student": iter([2.0, 7.0, 3.0])}

    class Task:
        def profile(self, model, latency=True):
            calls.append(model)
            return {"flops_per_sample": 1.0, "latency_ms_b1": next(figures[model])}

    got = interleaved_latency(Task(), {"teacher": "teacher", "student": "student"}, rounds=3)
    assert calls == ["teacher", "student"] * 3
    assert got == {"teacher": {"latency_ms_b1": 5.0}, "student": {"latency_ms_b1": 3.0}}
