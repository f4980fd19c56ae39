"""`make run` (`kdrec table quickstart`): one CIN teacher for all seeds (trained once, then read
from the cache), a DAGFM student that can share its embedding table, the student alone as the
baseline of the paired tests, and result files kept in the outputs tree."""

from __future__ import annotations

import re

from conftest import REPO
from kdrec.table.jobs import plan
from kdrec.table.spec import load_table


def test_quickstart_trains_one_teacher_and_compares_each_distiller_with_the_student_alone(outputs):
    p = plan(load_table("quickstart"), [])
    jobs = {(j.row.row, j.seed): j for j in p.jobs}
    assert sorted({r for r, _ in jobs}) == ["alone", "kd", "kd_dagfm", "teacher"] and p.seeds == [1, 2, 3]
    keys = {j.teacher_key for (row, _), j in jobs.items() if row != "alone"}
    assert len(keys) == 1 and None not in keys  # teacher rows and both distillers, every seed: one teacher
    assert all(jobs[("alone", s)].teacher_key is None for s in p.seeds)  # the baseline needs none
    assert len({j.signature for j in p.jobs}) == len(p.jobs)
    rows = {r.row: r for r in load_table("quickstart").rows}
    assert rows["kd"].baseline == rows["kd_dagfm"].baseline == "alone" and rows["kd"].teacher == "teacher"


def test_make_run_keeps_quickstart_results_in_the_outputs_tree():
    make = (REPO / "Makefile").read_text()
    recipe = re.search(r"^run:.*?\n((?:\t.*\n)+)", make, re.M).group(1)
    assert "table quickstart" in recipe and "paths.results=$(RUN_RESULTS)" in recipe
    assert re.search(r"^RUN_RESULTS := \$\(or \$\(KDREC_OUTPUTS\),outputs\)/results$", make, re.M)
