"""`kdrec table NAME [overrides] [--workers N]`: run the table's missing jobs (:mod:`kdrec.table`),
measure latency once training is over, then print and write the table (:mod:`kdrec.report.table`)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from kdrec.errors import KdrecError
from kdrec.report import table as report_table
from kdrec.table import parked, results, status, verify
from kdrec.table.jobs import plan as make_plan
from kdrec.table.runner import is_done, measure_latency, run_jobs
from kdrec.table.spec import load_table

LATENCY_MODES = ("missing", "all", "skip")


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _seeds(values: list[str] | None) -> list[int] | None:
    items = _split(values)
    try:
        return [int(v) for v in items] or None
    except ValueError:
        raise KdrecError(f"table: --seeds takes integers, got {items}") from None


def command_line(name: str, overrides: list[str]) -> str:
    return " ".join(["kdrec table", name, *map(shlex.quote, overrides), "--from-results"])


def run(name: str, overrides: list[str], workers: int = 1, threads: int = 0, from_results: bool = False,
        seeds: list[str] | None = None, rows: list[str] | None = None, latency: str = "missing",
        dry_run: bool = False, out: str | None = None, docs: str | None = None,
        verify_dir: str | None = None, park: bool = False) -> int:
    console = Console(width=160, highlight=False)

    def say(msg: str) -> None:
        console.print(escape(msg), soft_wrap=True)

    if workers < 1:
        raise KdrecError(f"table: --workers must be >= 1, got {workers}")
    if latency not in LATENCY_MODES:
        raise KdrecError(f"table: --latency must be one of {LATENCY_MODES}, got {latency!r}")
    spec = load_table(name)
    plan = make_plan(spec, list(overrides), _seeds(seeds), _split(rows) or None)
    if park:
        if dry_run or from_results or docs or out or verify_dir:
            raise KdrecError("table: --park copies checkpoints into results/; it takes none of "
                             "--dry-run, --from-results, --docs, --out, --verify")
        return _park(plan, say)
    if verify_dir:
        if dry_run or from_results or docs or out:
            raise KdrecError("table: --verify reruns jobs and compares them with results/; it takes none of "
                             "--dry-run, --from-results, --docs, --out")
        return _verify(plan, Path(verify_dir), list(overrides), seeds, rows, workers, threads, say)
    if dry_run:
        states = status.job_states(plan)
        for s in states:
            say(status.describe(s))
        say(status.summary(states))
        return 0
    failed: list = []
    notes: list[str] = []
    if not from_results:
        outcome = run_jobs(plan, workers, _threads_per_worker(threads, workers), say)
        failed = outcome.failed
        if outcome.busy:
            notes.append(f"{len(outcome.busy)} job(s) were being run by another process: "
                         + ", ".join(j.name for j in outcome.busy) + "; run the table again once they finish")
        # latency only when no training runs: not while another process still runs jobs of this table
        notes += measure_latency(plan, "skip" if outcome.busy else latency, say)
    found = {j: r for j in plan.jobs if (r := results.load(j.result_path)) is not None}
    if not found:
        why = "; ".join(notes) or ("every job failed (see above)" if failed else "")
        raise KdrecError(f"table {spec.name}: no finished job in {plan.results}" + (f": {why}" if why else ""))
    built = report_table.build(spec, plan.jobs, found, plan.seeds, command_line(name, plan.extra), plan.results)
    out_dir = Path(out) if out else plan.outputs
    written = report_table.write(built, spec, out_dir)
    if docs:
        written.append(report_table.embed(built.markdown, Path(docs), spec.name))
    print(built.markdown, flush=True)  # plain: the markdown is meant to be copied as it is
    for n in notes:
        say(n)
    say(f"wrote {', '.join(str(p) for p in written)}")
    if failed:
        say(f"{len(failed)} job(s) failed: " + "; ".join(f"{j.name} (log {log})" for j, log in failed))
        return 1
    return 0


def _park(plan, say) -> int:
    """``--park``: copy every unfinished job's checkpoints in progress into results/
    (:mod:`kdrec.table.parked`); entries of jobs finished meanwhile are deleted."""
    n = 0
    for job in plan.jobs:
        if is_done(job):
            if parked.remove(job):
                say(f"{job.name}: done, its parked checkpoints deleted ({parked.entry(job)})")
            continue
        got = parked.park(job)
        if got is not None:
            n += 1
            say(f"{job.name}: parked at {got.at}, {got.size / 2**20:.1f} MiB -> {got.path}")
        elif (info := parked.parked(job)) is not None:
            say(f"{job.name}: no checkpoint in this outputs tree; its parked one ({info.get('at')}) is kept")
    if n:
        say(f"commit {plan.results}/**/*.parked: a `kdrec table {plan.spec.name}` on any machine resumes "
            "those jobs from them")
    else:
        where = sorted({str(j.work_dir.parent) for j in plan.jobs if j.work_dir is not None})
        say(f"nothing to park: no unfinished distill job of table {plan.spec.name} has checkpoints"
            + (f" under {', '.join(where)}" if where else ""))
    return 0


def _threads_per_worker(threads: int, workers: int) -> int:
    """Torch threads for each of ``workers`` jobs: ``threads`` in all (0: every CPU)."""
    return max(1, (threads or os.cpu_count() or 1) // workers)


def _verify(plan, scratch: Path, overrides: list[str], seeds, rows, workers: int, threads: int, say) -> int:
    """Rerun ``plan``'s jobs from scratch under ``scratch`` and compare each with its committed
    result; 1 if one failed or differs under the same setup (:mod:`kdrec.table.verify`)."""
    scratch = scratch.resolve()
    where = [f"paths.root={scratch / 'outputs'}", f"paths.results={scratch / 'results'}",
             f"paths.teacher_store={scratch / 'results' / 'teachers'}"]  # teachers trained again too
    rerun = make_plan(plan.spec, overrides + where, _seeds(seeds), _split(rows) or None)
    if [j.signature for j in rerun.jobs] != [j.signature for j in plan.jobs]:  # paths are no part of identity
        raise KdrecError("table --verify: the rerun's jobs are not the committed ones (a kdrec bug)")
    say(f"verify: {len(rerun.jobs)} job(s) run again under {scratch} (a job finished there earlier counts; "
        f"delete the folder to start over), compared with {plan.results}")
    outcome = run_jobs(rerun, workers, _threads_per_worker(threads, workers), say)
    every_seed = make_plan(plan.spec, overrides, None, _split(rows) or None)  # the table's seeds: the spread
    committed = {j.result_path: r for j in every_seed.jobs if (r := results.load(j.result_path)) is not None}
    by_row: dict[str, list[dict]] = {}
    for j in every_seed.jobs:
        if j.result_path in committed:
            by_row.setdefault(j.row.id, []).append(committed[j.result_path])
    checks = [verify.compare(j.name, committed.get(j.result_path) or results.load(j.result_path),
                             results.load(r.result_path), verify.seed_spread(by_row.get(j.row.id, [])))
              for j, r in zip(plan.jobs, rerun.jobs)]
    for c in checks:
        say(verify.describe(c))
    say(verify.summary(checks))
    if outcome.busy:
        say(f"{len(outcome.busy)} job(s) were being run by another process under {scratch}")
    return 1 if any(c.failure for c in checks) or outcome.busy else 0


__all__ = ["run", "is_done"]
