"""`kdrec table`: a table yaml is checked and expanded, jobs get an identity that extra overrides
change and machine settings do not, jobs sharing a teacher wait for it, the table's numbers come
from the result files alone, and the smoke table runs, resumes, rebuilds from results/ and dies
cleanly with its jobs."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import DATA_DIR, KDREC, REPO, run_cli
from kdrec.errors import ConfigError, KdrecError
from kdrec.report import table as report_table
from kdrec.report.significance import paired_t
from kdrec.table.jobs import Job, plan
from kdrec.table.runner import Scheduler, order
from kdrec.table.spec import load_table


def _yaml(tmp_path: Path, obj: dict, name: str = "t") -> str:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(obj))
    return str(p)


GROUPED = {
    "seeds": [1, 2],
    "overrides": ["trainer.epochs=2"],
    "groups": [{"id": "a", "label": "A", "overrides": ["experiment=smoke"], "vars": {"s": "FM"}},
               {"id": "b", "overrides": ["experiment=smoke", "student=lr"], "vars": {"s": "LR"}}],
    "rows": [{"id": "teacher", "stage": "pretrain-teacher"},
             {"id": "alone", "label": "{s} alone", "overrides": ["distiller=none"]},
             {"id": "kd", "label": "{s} + KD in {group}", "overrides": ["distiller=kd"]},
             {"id": "extra", "overrides": ["distiller=kd", "distiller.alpha=0.5"], "only": ["b"], "baseline": "kd"}],
    "teacher": "teacher", "baseline": "alone",
    "columns": ["test:auc", "delta:auc", "ttest:auc", "ratio:flops"],
}


def test_spec_expands_groups_templates_and_references(tmp_path):
    spec = load_table(_yaml(tmp_path, GROUPED))
    ids = [r.id for r in spec.rows]
    assert ids == ["a/teacher", "a/alone", "a/kd", "b/teacher", "b/alone", "b/kd", "b/extra"]
    rows = {r.id: r for r in spec.rows}
    assert rows["b/kd"].label == "LR + KD in b" and rows["a/alone"].label == "FM alone"
    # the table's overrides, then the group's, then the row's
    assert rows["b/extra"].overrides == ("trainer.epochs=2", "experiment=smoke", "student=lr",
                                         "distiller=kd", "distiller.alpha=0.5")
    assert rows["b/extra"].teacher == "b/teacher" and rows["b/extra"].baseline == "b/kd"
    assert rows["a/kd"].baseline == "a/alone" and rows["a/alone"].baseline is None  # not itself
    assert rows["a/teacher"].baseline is None  # teacher rows take no default baseline
    assert spec.groups == [("a", "A"), ("b", "b")]


@pytest.mark.parametrize("change, says", [
    ({"columns": ["test:auc", "nope"]}, "unknown column 'nope'"),
    ({"columns": ["test"]}, "needs an argument"),
    ({"baseline": "nobody"}, "baseline names no row: 'nobody'"),
    ({"rows": [{"id": "x"}, {"id": "x"}]}, "duplicate row id"),
    ({"rows": [{"id": "x", "overides": []}]}, "overides"),
    ({"rows": [{"id": "x", "stage": "train"}]}, "allowed: one of 'distill', 'pretrain-teacher'"),
    ({"rows": [{"id": "x", "label": "{nope}"}]}, "cannot fill '{nope}'"),
    ({"rows": [{"id": "x", "only": ["zz"]}]}, "unknown group(s) ['zz']"),
    ({"seeds": [-1]}, "seeds"),
    ({"columns": ["claim"]}, "needs a claim"),
    ({"orderings": [{"better": "kd", "worse": "nobody"}]}, "orderings[0]: names no row: 'nobody'"),
    ({"orderings": [{"better": "kd", "worse": "alone", "only": ["zz"]}]}, "unknown group(s) ['zz']"),
    ({"orderings": [{"better": "kd", "wrose": "alone"}]}, "wrose"),
])
def test_spec_errors_name_the_problem(tmp_path, change, says):
    bad = {**GROUPED, **change}
    if "rows" in change:
        bad.update(teacher=None, baseline=None)
    with pytest.raises(ConfigError) as e:
        load_table(_yaml(tmp_path, bad))
    assert says in str(e.value) and "t.yaml" in str(e.value)


def test_every_shipped_table_loads_and_names_distinct_jobs():
    from kdrec.table.spec import table_names

    assert {"smoke", "kd_dagfm", "rok", "topk_ml100k", "topk_gowalla"} <= set(table_names())
    kd = load_table("kd_dagfm")
    assert len({r.group for r in kd.rows}) == 6
    assert sum(r.row == "kd_dagfm_nofinetune" for r in kd.rows) == 2
    topk = load_table("topk_ml100k")
    methods = ["rd", "cd", "rrd", "ir_rrd", "de", "de_rrd", "phr", "ftd", "htd", "hetcomp"]
    assert [r.row for r in topk.rows][2:12] == methods
    # every later row is an earlier-kdrec variant t-tested against its method's reference row
    for r in topk.rows[12:]:
        assert r.baseline == r.row.split("_")[0] and r.baseline in methods, r.row
    assert {"share:recall@20", "share:ndcg@20"} <= set(topk.cfg.columns)


def test_job_identity_follows_overrides_not_machine_settings(outputs, tmp_path):
    spec = load_table("smoke")
    base = plan(spec, [])
    assert [j.seed for j in base.jobs] == [1, 2, 1, 2]
    assert len({j.signature for j in base.jobs}) == 4
    same = plan(spec, ["device.threads=3", "trainer.progress=true", f"paths.root={tmp_path / 'elsewhere'}"])
    assert [j.signature for j in same.jobs] == [j.signature for j in base.jobs]
    other = plan(spec, ["dataset.num_rows=5000"])
    assert not {j.signature for j in other.jobs} & {j.signature for j in base.jobs}
    assert base.results == tmp_path / "results" / "smoke"
    j = base.jobs[2]
    assert j.result_path == base.results / "kd" / f"seed1-{j.signature}.json"
    assert j.run_dir == outputs / "tables" / "smoke" / "kd" / f"seed1-{j.signature}"
    # the teacher row and the KD row of one seed share a teacher; seeds do not
    assert base.jobs[0].teacher_key == base.jobs[2].teacher_key != base.jobs[1].teacher_key
    assert plan(spec, ["distiller=none"], rows=["kd"]).jobs[0].teacher_key is None
    with pytest.raises(ConfigError, match="use --seeds"):
        plan(spec, ["seed=3"])
    with pytest.raises(ConfigError, match="row teacher: .*do not compose"):
        plan(spec, ["teacher=nope"])


def _job(row, seed, key):
    return Job("t", row, seed, (), f"{row.id}{seed}", key, Path("/r"), Path("/x"))


def test_scheduler_runs_one_job_per_untrained_teacher():
    spec = load_table("smoke")
    teacher, kd = spec.rows
    jobs = order([_job(kd, 1, "A"), _job(kd, 2, "B"), _job(teacher, 1, "A"), _job(teacher, 2, "B")])
    assert [(j.row.id, j.seed) for j in jobs] == [("teacher", 1), ("kd", 1), ("teacher", 2), ("kd", 2)]
    s = Scheduler(jobs)
    first, second = s.take(), s.take()
    assert (first.row.id, first.seed) == ("teacher", 1)
    assert (second.row.id, second.seed) == ("teacher", 2)  # kd 1 waits for teacher 1
    s.finish(first, ok=False)  # the teacher job failed: the next job of its key trains it
    third = s.take()
    assert (third.row.id, third.seed) == ("kd", 1)
    s.finish(second, ok=True)
    fourth = s.take()
    assert (fourth.row.id, fourth.seed) == ("kd", 2)
    s.finish(third, ok=True)
    s.finish(fourth, ok=True)
    assert s.take() is None
    ready = Scheduler([_job(kd, 1, "A"), _job(kd, 3, "A")], ready_keys={"A"})
    assert ready.take() and ready.take()  # a teacher that exists: its jobs run side by side


def _result(seed, test, flops=None, teacher_test=None, latency=None, params=10):
    return {"seed": seed, "model": "m", "seconds": 5.0,
            "metrics": {"valid": test, "test": test, "params": params},
            "teacher": {"test": teacher_test} if teacher_test else None,
            "flops": flops or {}, "latency": latency}


def test_table_numbers_from_result_files(tmp_path):
    spec = load_table(_yaml(tmp_path, {
        "seeds": [1, 2, 3], "rows": [{"id": "teacher", "stage": "pretrain-teacher"}, {"id": "alone"}, {"id": "kd"}],
        "teacher": "teacher", "baseline": "alone",
        "columns": ["test:auc", "delta:auc", "share:auc", "ttest:auc", "flops", "ratio:flops",
                    "ratio:latency_b1", "latency:b1", "claim"],
        "claim": {"metric": "auc", "max_drop": 0.001, "max_flops_ratio": 0.215}}))
    t, alone, kd = spec.rows
    tauc, aauc, kauc = [0.970, 0.972, 0.974], [0.940, 0.950, 0.945], [0.9695, 0.9705, 0.9735]
    st = {"student": {"flops_per_sample": 20.0}, "teacher": {"flops_per_sample": 100.0}}
    jobs, found = [], {}
    for i, seed in enumerate([1, 2, 3]):
        for row, auc, res in [
            (t, tauc[i], _result(seed, {"auc": tauc[i]})),
            (alone, aauc[i], _result(seed, {"auc": aauc[i]}, flops={"student": {"flops_per_sample": 20.0}})),
            (kd, kauc[i], _result(seed, {"auc": kauc[i]}, flops=st, teacher_test={"auc": tauc[i]},
                                  latency={"student": {"latency_ms_b1": 0.5}, "teacher": {"latency_ms_b1": 2.0},
                                           "loadavg": [0.25, 0.1, 0.1]} if seed == 1 else None))]:
            j = _job(row, seed, None)
            jobs.append(j)
            if not (row is alone and seed == 3):  # one job missing
                found[j] = res
    built = report_table.build(spec, jobs, found, [1, 2, 3], "kdrec table t --from-results")
    rows = {r["row"]: r for r in built.summary.iter_rows(named=True)}
    assert rows["alone"]["n"] == 2 and rows["kd"]["n"] == 3
    assert rows["kd"]["test_auc_mean"] == pytest.approx(sum(kauc) / 3)
    assert rows["kd"]["test_auc_std"] == pytest.approx(0.0020817, rel=1e-4)
    assert rows["kd"]["delta_auc"] == pytest.approx(sum(kauc) / 3 - 0.972)
    assert rows["kd"]["share_auc"] == pytest.approx((sum(kauc) / 3) / 0.972)
    # the teacher row has no FLOPs of its own: the distill rows recorded its cost
    assert rows["teacher"]["flops_per_sample"] == 100.0
    assert rows["alone"]["ratio_flops"] == pytest.approx(0.2) and rows["kd"]["ratio_flops"] == pytest.approx(0.2)
    assert rows["kd"]["ratio_latency_b1"] == pytest.approx(0.25)  # both from one benchmark
    exp = paired_t(kauc[:2], aauc[:2])  # paired on the seeds both rows have
    assert rows["kd"]["ttest_auc_p"] == pytest.approx(exp["p"]) and rows["kd"]["ttest_auc_n"] == 2
    assert rows["kd"]["claim"] is True and rows["alone"]["claim"] is False  # -0.001 exactly holds
    assert rows["teacher"]["claim"] is None
    md = built.markdown
    assert "| alone | 2/3 |" in md and "Missing: 1 job(s): alone seed 3" in md
    assert "a row with n/3 seeds averages the n seeds it has so far" in md  # the 2/3 row's mean is over 2
    assert "0.9712 ± 0.0021" in md and "| yes |" in md and "load average (1 min) 0.25-0.25" in md
    assert "Generated from results/t/ by `kdrec table t --from-results`" in md
    assert not math.isnan(rows["kd"]["ttest_auc_diff"])
    # a distill row that recorded another teacher than the teacher row's is flagged
    found[jobs[2]] = _result(1, {"auc": kauc[0]}, flops=st, teacher_test={"auc": 0.5})
    assert "another teacher" in report_table.build(spec, jobs, found, [1, 2, 3], "x").markdown
    written = report_table.write(built, spec, tmp_path / "out")
    assert (tmp_path / "out" / "pareto.png") in written and (tmp_path / "out" / "table.csv").is_file()


def test_paper_orderings_are_paired_tests_in_the_metrics_direction(tmp_path):
    """Hand-computed: AUC diffs (+0.01, +0.01, -0.005): t = 1 with 2 df, p = 1 - 1/sqrt(3);
    logloss (lower is better) diffs (-0.05, -0.05, -0.04): t = 14, p = 1 - 14/sqrt(198)."""
    spec = load_table(_yaml(tmp_path, {
        "seeds": [1, 2, 3], "rows": [{"id": "alone"}, {"id": "kd"}, {"id": "extra"}],
        "columns": ["test:logloss", "ttest:auc"], "baseline": "alone",
        "orderings": [{"better": "kd", "worse": "alone", "source": "paper A"},
                      {"better": "kd", "worse": "alone", "metric": "logloss"},
                      {"better": "alone", "worse": "kd", "text": "alone wins"},
                      {"better": "kd", "worse": "extra"}]}))
    alone, kd, extra = spec.rows
    auc = {alone: [0.94, 0.95, 0.975], kd: [0.95, 0.96, 0.97], extra: [0.9]}
    logloss = {alone: [0.25, 0.26, 0.23], kd: [0.20, 0.21, 0.19], extra: [0.3]}
    jobs, found = [], {}
    for row in spec.rows:
        for i, seed in enumerate([1, 2, 3]):
            j = _job(row, seed, None)
            jobs.append(j)
            if i < len(auc[row]):
                found[j] = _result(seed, {"auc": auc[row][i], "logloss": logloss[row][i]})
    built = report_table.build(spec, jobs, found, [1, 2, 3], "x")
    by_auc, by_loss, reverse, one = built.orderings
    assert by_auc["metric"] == "auc" and by_auc["n"] == 3 and by_auc["agree"] == 2
    assert by_auc["diff"] == pytest.approx(0.005) and by_auc["p"] == pytest.approx(1 - 1 / math.sqrt(3))
    assert by_auc["reading"] == "holds in the means (n.s.)"
    assert by_loss["diff"] == pytest.approx(-0.04667, abs=1e-5) and by_loss["agree"] == 3
    assert by_loss["p"] == pytest.approx(1 - 14 / math.sqrt(198)) and by_loss["reading"].startswith("**holds**")
    assert reverse["diff"] == pytest.approx(-0.005) and reverse["reading"] == "not in the means (n.s.)"
    assert one["n"] == 1 and one["p"] is None and one["reading"] == "holds on the one seed"
    md = built.markdown
    assert "| kd > alone | paper A | 3 | +0.0050 | 2/3 | 0.423 | holds in the means (n.s.) |" in md
    assert "| alone wins |  | 3 | -0.0050 | 1/3 |" in md
    written = report_table.write(built, spec, tmp_path / "out")
    assert (tmp_path / "out" / "orderings.csv") in written


def test_paper_orderings_are_checked_per_group_that_has_both_rows(tmp_path):
    spec = load_table(_yaml(tmp_path, {**GROUPED, "orderings": [
        {"better": "kd", "worse": "alone"}, {"better": "kd", "worse": "alone", "only": ["b"]},
        {"better": "extra", "worse": "alone"}]}))
    jobs, found = [], {}
    for row in spec.rows:
        for seed in (1, 2):
            j = _job(row, seed, None)
            jobs.append(j)
            found[j] = _result(seed, {"auc": 0.9 + 0.01 * seed + (0.02 if row.row == "kd" else 0.0)})
    built = report_table.build(spec, jobs, found, [1, 2], "x")
    assert [(r["group"], r["better"]) for r in built.orderings] == [("a", "kd"), ("b", "kd"), ("b", "kd"), ("b", "extra")]
    assert all(r["diff"] == pytest.approx(0.02) for r in built.orderings[:3])
    assert built.orderings[0]["p"] < 1e-6 and built.orderings[0]["reading"].startswith("**holds**")
    assert "| A | FM + KD in a > FM alone |" in built.markdown  # the group's label, the rows' labels


def _results(root: Path) -> dict[str, dict]:
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))}


def test_smoke_table_runs_resumes_and_rebuilds_from_results(cli, outputs, tmp_path):
    first = cli("table", "smoke", "--workers", "2", "--threads", "2")
    assert "4 jobs, 0 done, 4 to run" in first.stdout
    res_root = tmp_path / "results" / "smoke"
    res = _results(res_root)
    assert len(res) == 4
    for name, r in res.items():
        assert {"row", "seed", "overrides", "signature", "metrics", "versions", "seconds", "git", "machine"} <= set(r)
        assert r["machine"]["cpu"]["isa"] is not None and "aten_capability" in r["machine"]["cpu"]
        assert r["threads"] == 1  # 2 threads split between 2 workers
        assert r["metrics"]["test"]["auc"] > 0.5 and f"seed{r['seed']}-{r['signature']}.json" in name
        assert f"seed={r['seed']}" in r["overrides"] and "experiment=smoke" in r["overrides"]
        if r["row"] == "kd":
            assert r["teacher"]["test"]["auc"] > 0.5 and r["flops"]["teacher"]["flops_per_sample"] > 0
    measured = [r for r in res.values() if r["latency"]]
    assert sorted(r["row"] for r in measured) == ["kd", "teacher"]  # one benchmark per row
    for r in measured:
        assert len(r["latency"]["loadavg"]) == 3 and r["latency"]["threads"] == 1
        role = "teacher" if r["row"] == "teacher" else "student"
        assert r["latency"][role]["latency_ms_b1"] > 0 and r["flops"][role]["flops_per_sample"] > 0
    # every distill job recorded the very teacher its seed's teacher row trained
    by = {(r["row"], r["seed"]): r for r in res.values()}
    for seed in (1, 2):
        assert by[("kd", seed)]["teacher"]["test"] == by[("teacher", seed)]["metrics"]["test"]
    md = (outputs / "tables" / "smoke" / "table.md").read_text()
    assert "| FM + logit KD | 2 |" in md and (outputs / "tables" / "smoke" / "pareto.png").is_file()
    assert md.strip() in first.stdout

    again = cli("table", "smoke", "--workers", "2")
    assert "4 jobs, 4 done, 0 to run" in again.stdout and "[1/" not in again.stdout
    assert _results(res_root) == res  # nothing trained, nothing measured again

    # another machine: an empty outputs tree, the results/ of the repository
    fresh = tmp_path / "outputs2"
    rebuilt = run_cli("table", "smoke", "--from-results", outputs=fresh)
    assert (fresh / "tables" / "smoke" / "table.md").read_text() == md
    assert sorted(p.name for p in fresh.iterdir()) == ["tables"]  # no training, no cache, no runs
    assert "[1/" not in rebuilt.stdout

    # other overrides: other jobs, none of these results counted
    dry = cli("table", "smoke", "dataset.num_rows=6000", "--dry-run")
    assert dry.stdout.count("to run ") == 4 and "4 jobs: 0 done, 0 running elsewhere, 4 to run" in dry.stdout
    # a finished run whose result file was lost (the table was killed between the two) is not rerun
    lost = next(res_root.glob("kd/seed2-*.json"))
    lost.unlink()
    third = cli("table", "smoke", "--latency", "skip")
    assert "4 done, 0 to run" in third.stdout and json.loads(lost.read_text())["seconds"] is None


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_stopping_the_table_stops_its_jobs_and_counts_nothing(outputs, tmp_path, sig):
    env = {**os.environ, "KDREC_OUTPUTS": str(outputs), "KDREC_DATA_DIR": str(DATA_DIR),
           "KDREC_RESULTS": str(tmp_path / "results")}
    log = open(tmp_path / "table.log", "wb")
    # a longer teacher so that it is surely in flight when the table is stopped
    proc = subprocess.Popen([KDREC, "table", "smoke", "--rows", "teacher", "--seeds", "1", "trainer.epochs=200"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, kids = time.time() + 120, []
        while time.time() < deadline and not kids and proc.poll() is None:
            time.sleep(0.2)
            kids = _children(proc.pid)
        assert kids, (tmp_path / "table.log").read_text()
        time.sleep(1.0)
        proc.send_signal(sig)
        rc = proc.wait(60)
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.2)
        assert not any(_alive(k) for k in kids), "a table job outlived its table"
        assert rc == (130 if sig == signal.SIGINT else -signal.SIGKILL)
        assert not list((tmp_path / "results").rglob("*.json"))  # nothing counted as done
        assert not list((outputs / "tables").rglob("metrics.json"))
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def test_a_job_another_process_runs_is_left_to_it(cli, outputs):
    from filelock import FileLock

    job = plan(load_table("smoke"), [], seeds=[1], rows=["teacher"]).jobs[0]
    job.run_dir.parent.mkdir(parents=True)
    with FileLock(str(job.run_dir) + ".lock"):  # as a second `kdrec table` running it would
        proc = cli("table", "smoke", "--rows", "teacher", "--seeds", "1", check=False)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert "skipped, another process runs it" in out and "being run by another process" in out
    assert proc.returncode == 2 and not job.result_path.exists() and not (job.run_dir / "metrics.json").exists()


def test_embed_replaces_only_the_marked_block(tmp_path):
    doc = tmp_path / "page.md"
    start, end = report_table.markers("t")
    doc.write_text(f"# Page\n\nintro\n{start}\nold numbers\n{end}\n\nafter\n")
    report_table.embed("## T\n\n| a |\n", doc, "t")
    text = doc.read_text()
    assert text == f"# Page\n\nintro\n{start}\n\n### T\n\n| a |\n\n{end}\n\nafter\n"
    report_table.embed("## T\n\n| b |\n", doc, "t")  # again: replaced, not appended
    assert "| a |" not in doc.read_text() and doc.read_text().count("| b |") == 1
    doc.write_text("# no markers\n")
    with pytest.raises(KdrecError, match="needs one line '<!-- kdrec table t -->'"):
        report_table.embed("x", doc, "t")


def test_docs_tables_are_the_ones_results_give():
    """Every table embedded in docs/ equals what `kdrec table NAME --from-results` builds from the
    committed results/ now: a number in the docs that no result file backs fails here."""
    import dataclasses
    import re

    from kdrec.stages.table import command_line
    from kdrec.table import results as table_results
    from kdrec.table.jobs import plan as make_plan

    docs = Path(__file__).resolve().parents[1] / "docs"
    res_root = Path(__file__).resolve().parents[1] / "results"
    checked = 0
    for page in sorted(docs.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for name in re.findall(r"^<!-- kdrec table (\S+) -->$", text, flags=re.M):
            spec = load_table(name)
            p = make_plan(spec, [])
            jobs = [dataclasses.replace(j, result_path=res_root / name / j.row.id / j.result_path.name)
                    for j in p.jobs]
            found = {j: r for j in jobs if (r := table_results.load(j.result_path)) is not None}
            assert found, (f"{page.name} embeds table {name}, but results/{name} holds no result of its "
                           "jobs as configured now (a changed config leaves the docs' numbers unbacked)")
            built = report_table.build(spec, jobs, found, p.seeds, command_line(name, []), f"results/{name}")
            copy = page.parent / f".{page.name}.check"
            try:
                copy.write_text(text, encoding="utf-8")
                report_table.embed(built.markdown, copy, name)
                start, end = report_table.markers(name)
                block = lambda t: t.split(start, 1)[1].split(end, 1)[0]  # noqa: E731
                assert block(copy.read_text()) == block(text), (
                    f"{page.name}: the {name} table is not what results/{name} gives; "
                    f"regenerate with `kdrec table {name} --from-results --docs docs/{page.name}`")
            finally:
                copy.unlink(missing_ok=True)
            checked += 1
    assert checked >= 3  # kd_dagfm, rok, topk pages


def test_seconds_per_job_count_a_resumed_jobs_earlier_runs():
    """A job resumed from its checkpoint records only its last run's wall seconds; the fit
    loop's training seconds carry over the resume, so the table takes the larger of the two."""
    resumed = {"seconds": 389.0, "metrics": {"train_seconds": 6197.7}}
    fresh = {"seconds": 295.9, "metrics": {"train_seconds": 231.5}}
    from kdrec.table.results import job_seconds

    assert job_seconds(resumed) == 6197.7
    assert job_seconds(fresh) == 295.9
    assert job_seconds({"seconds": None, "metrics": {"train_seconds": 10.0}}) is None
    assert job_seconds({"seconds": 4.0}) == 4.0


def test_a_result_names_the_source_tree_its_job_started_from(tmp_path, monkeypatch):
    from kdrec.table import results

    teacher = load_table("smoke").rows[0]
    job = Job("t", teacher, 1, (), "sig", None, tmp_path / "r.json", tmp_path / "run")
    job.run_dir.mkdir()
    (job.run_dir / "metrics.json").write_text(json.dumps({"test": {"auc": 0.5}}))
    monkeypatch.setattr(results, "git_commit", lambda: {"commit": "at-the-end", "dirty": True})
    started = {"commit": "at-the-start", "dirty": False}
    assert results.from_run(job, 1.0, git=started)["git"] == started
    assert results.from_run(job, None)["git"]["commit"] == "at-the-end"  # found finished: read now


def test_dry_run_states_and_estimates_from_the_rows_finished_seeds(outputs):
    """A job is done (result file), running (another process holds its lock) or to run; a job
    left is estimated by the median cost of its row's finished seeds, a resumed job by its
    training seconds; rows without a finished seed are named as such."""
    from filelock import FileLock

    from kdrec.table import results, status

    p = plan(load_table("smoke"), [], seeds=[1, 2, 3])
    job = {(j.row.id, j.seed): j for j in p.jobs}
    for seed, wall, train in ((1, 100.0, 90.0), (2, 50.0, 400.0)):  # seed 2 resumed: 400 s in all
        j = job[("teacher", seed)]
        results.save(j.result_path, {"overrides": j.identity_overrides(), "seconds": wall, "threads": 1,
                                     "metrics": {"test": {"auc": 0.6}, "train_seconds": train}})
    job[("kd", 1)].run_dir.mkdir(parents=True)
    (job[("kd", 1)].run_dir / "epochs.csv").write_text("phase,epoch,train_loss\ndistill,6,0.5\ndistill,7,0.4\n")
    # teacher seed 3 was started once and stopped: 100 s of its ~250 s logged
    job[("teacher", 3)].run_dir.mkdir(parents=True)
    (job[("teacher", 3)].run_dir / "epochs.csv").write_text(
        "phase,epoch,epoch_seconds\ntrain,1,40.0\ntrain,2,\ntrain,3,60.0\n")
    with FileLock(str(job[("kd", 1)].lock_path)):  # as a `kdrec table` running it elsewhere would
        states = {(s.job.row.id, s.job.seed): s for s in status.job_states(p)}
        # where /proc/locks cannot be read, the lock is tried instead
        assert status.held_elsewhere(job[("kd", 1)], None) is True
    assert [states[("teacher", s)].state for s in (1, 2, 3)] == ["done", "done", "to run"]
    assert states[("kd", 1)].state == "running" and states[("kd", 2)].state == "to run"
    assert states[("teacher", 2)].seconds == 400.0
    est = states[("teacher", 3)].estimate
    assert est.seconds == 250.0 and est.seeds == 2 and est.threads == {1}  # median of 100 and 400
    assert states[("kd", 1)].estimate is None and states[("kd", 1)].progress.at == "distill epoch 7"
    assert states[("kd", 1)].progress.logged is None  # no epoch_seconds column
    assert "at distill epoch 7  no finished seed of its row" in status.describe(states[("kd", 1)])
    assert states[("kd", 2)].progress is None
    pr = states[("teacher", 3)].progress
    assert (pr.at, pr.logged, pr.pace) == ("train epoch 3", 100.0, 50.0)  # epoch 2's empty figure skipped
    assert status.left_seconds(states[("teacher", 3)]) == 150.0
    assert ("at train epoch 3 (50 s/epoch lately, 2 min logged)  ~2 min left of ~4 min (median of 2 "
            "finished seeds, 1 thread)") in status.describe(states[("teacher", 3)])
    # a job that has logged more than its row's median is not said to be nearly done
    (job[("teacher", 3)].run_dir / "epochs.csv").write_text("phase,epoch,epoch_seconds\ntrain,9,300.0\n")
    over = {(s.job.row.id, s.job.seed): s for s in status.job_states(p)}[("teacher", 3)]
    assert status.left_seconds(over) == 0.0
    assert status.describe(over).endswith("at train epoch 9 (300 s/epoch lately, 5 min logged)  past its row's "
                                          "~4 min (median of 2 finished seeds, 1 thread); left unknown")
    assert "less what started jobs logged (1 past that estimate, counted as 0)" in status.summary([over])
    line = status.summary(list(states.values()))
    assert line.startswith("6 jobs: 2 done, 1 running elsewhere, 3 to run; left: ~2 min")
    assert line.endswith("; no estimate for 3 job(s), row(s) kd")
    # another seed's plan: estimated from the seeds found under the row's results folder
    other = plan(load_table("smoke"), [], seeds=[7])
    seven = {s.job.row.id: s for s in status.job_states(other)}
    assert seven["teacher"].estimate.seconds == 250.0 and seven["kd"].estimate is None
    # ...but never from a job that differs in more than its seed
    assert all(s.estimate is None for s in status.job_states(plan(load_table("smoke"), ["dataset.num_rows=6000"])))
    # the lock is free again: the job is to run
    assert status.held_elsewhere(job[("kd", 1)], None) is False
    assert status.job_states(p)[[j for j in p.jobs].index(job[("kd", 1)])].state == "to run"


def test_verify_reruns_from_scratch_and_fails_only_on_a_difference_the_setup_does_not_explain(cli, tmp_path):
    cli("table", "smoke", "--rows", "teacher", "--seeds", "1", "--threads", "1", "--latency", "skip")
    committed = next((tmp_path / "results" / "smoke" / "teacher").glob("seed1-*.json"))
    original = committed.read_text()
    record = json.loads(original)
    # as if recorded from a committed tree: the state of the checkout running the tests is no part of this test
    record["git"] = {**(record.get("git") or {}), "dirty": False}
    committed.write_text(json.dumps(record))
    scratch = tmp_path / "verify"
    same = cli("table", "smoke", "--rows", "teacher", "--seeds", "1", "--threads", "1", "--verify", str(scratch))
    rerun = next((scratch / "results" / "smoke" / "teacher").glob("seed1-*.json"))
    assert rerun.name == committed.name and rerun.read_text() != original  # its own run
    assert (scratch / "outputs" / "teachers").is_dir() and "teacher seed 1: identical [same setup]" in same.stdout

    record["metrics"]["test"]["auc"] += 1e-9
    committed.write_text(json.dumps(record))
    # the rerun's result counts as done: compared again, not trained again
    moved = cli("table", "smoke", "--rows", "teacher", "--seeds", "1", "--threads", "1", "--verify", str(scratch),
                check=False)
    assert moved.returncode == 1 and "[1/" not in moved.stdout
    assert "teacher seed 1: differs: test:auc" in moved.stdout and "[same setup]" in moved.stdout

    record["machine"]["cpu"]["model"] = "another"
    committed.write_text(json.dumps(record))
    drift = cli("table", "smoke", "--rows", "teacher", "--seeds", "1", "--threads", "1", "--verify", str(scratch))
    assert "other setup: machine: cpu.model another ->" in drift.stdout and "1 differ under another setup" in drift.stdout

    del record["machine"]
    committed.write_text(json.dumps(record))
    old = cli("table", "smoke", "--rows", "teacher", "--seeds", "1", "--threads", "1", "--verify", str(scratch))
    assert "other setup: machine not recorded" in old.stdout


def test_verify_reads_a_difference_on_the_rows_seed_spread_and_names_the_setup_that_differs():
    from kdrec.table.verify import compare, seed_spread

    setup = {"machine": {"cpu": {"model": "207"}}, "versions": {"torch": "2.13.0"}, "threads": 1}
    seeds = [{"metrics": {"test": {"auc": v, "logloss": 0.3}}} for v in (0.90, 0.92, 0.94)]
    spread = seed_spread(seeds)
    assert spread["auc"] == pytest.approx((0.02, 3)) and spread["logloss"] == (0.0, 3)
    committed = {"metrics": {"test": {"auc": 0.90, "logloss": 0.3}, "phases": [{"phase": "train", "best_epoch": 7}]},
                 **setup}
    fresh = {"metrics": {"test": {"auc": 0.91, "logloss": 0.3}, "phases": [{"phase": "train", "best_epoch": 9}]},
             **setup, "threads": 2}
    c = compare("alone seed 1", committed, fresh, spread)
    assert c.state == "differs" and not c.failure  # the thread count explains it
    assert c.detail.startswith("test:auc 0.9 -> 0.91, train:best_epoch 7 -> 9")
    assert "largest test move 0.5x the row's seed std (auc, 3 seeds)" in c.detail and c.setup == "threads: 1 -> 2"
    assert compare("alone seed 1", committed, {**fresh, "threads": 1}).failure
    dirty = compare("alone seed 1", {**committed, "git": {"commit": "abc", "dirty": True}}, {**fresh, "threads": 1})
    assert not dirty.failure and dirty.setup == "recorded from an uncommitted tree (its code is not known)"
    assert compare("alone seed 1", committed, committed).state == "identical"
    assert compare("alone seed 1", committed, None).failure
