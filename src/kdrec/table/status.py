"""`kdrec table NAME --dry-run`: each job's state (done, running in another process, to run) and
what the jobs left will cost, estimated from the finished seeds of their own rows, so that a grid
can be planned (jobs x hours) before it is started and checked while it runs."""

from __future__ import annotations

import csv
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from kdrec.table import parked, results
from kdrec.table.jobs import Job, Plan

DONE, RUNNING, TO_RUN = "done", "running", "to run"
MAX_NAMED = 8  # rows named in the summary line


def held_locks() -> set[tuple[int, int, int]] | None:
    """(device major, minor, inode) of every file lock held on this machine, from /proc/locks
    (Linux); None where it cannot be read."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    held = set()
    for line in text.splitlines():
        if "->" in line:  # a process waiting for a lock, not holding it
            continue
        for tok in line.split():
            parts = tok.split(":")
            if len(parts) == 3 and parts[2].isdigit():
                try:
                    held.add((int(parts[0], 16), int(parts[1], 16), int(parts[2])))
                except ValueError:
                    pass
    return held


def held_elsewhere(job: Job, locks: set[tuple[int, int, int]] | None) -> bool:
    """Whether another process holds the job's lock (runs it now). Read from ``locks``
    (:func:`held_locks`) where there are, so that looking never takes the lock from a table that
    is about to start the job; elsewhere tried, never waited for. A lock file alone says nothing
    (the OS lock goes with its process)."""
    try:
        st = job.lock_path.stat()
    except OSError:
        return False
    if locks is not None:
        return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) in locks
    lock = FileLock(str(job.lock_path), is_singleton=False, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


@dataclass(frozen=True)
class Estimate:
    seconds: float  # median over the row's finished seeds
    seeds: int  # how many finished seeds it comes from
    threads: frozenset  # the torch threads those seeds ran with (None: not recorded)


@dataclass(frozen=True)
class JobState:
    job: Job
    state: str
    seconds: float | None  # a finished job's own cost
    estimate: Estimate | None  # a job left's expected cost
    progress: Progress | None = None  # what a started job logged


@dataclass(frozen=True)
class Progress:
    at: str  # the last epoch logged, e.g. "distill epoch 287"
    logged: float | None  # the seconds of the epochs in the log (None: not recorded)
    pace: float | None  # median seconds of its last PACE_EPOCHS epochs


PACE_EPOCHS = 10


def progress(job: Job) -> Progress | None:
    """What a started (or interrupted) job logged to its run directory's epochs.csv
    (``logger=csv``, the default), or else to its parked copy (:mod:`kdrec.table.parked`): its
    last epoch, the seconds its epochs took and its recent pace; None if it logged no epoch."""
    path = job.run_dir / "epochs.csv"
    if not path.is_file():  # a job that resumes from results/ on this machine
        path = parked.entry(job) / parked.LOG
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error):
        return None
    if not rows or not rows[-1].get("epoch"):
        return None
    seconds = []
    for r in rows:
        try:
            seconds.append(float(r.get("epoch_seconds") or "nan"))
        except ValueError:
            seconds.append(float("nan"))
    seconds = [x for x in seconds if x == x]  # an epoch without a figure counts as not recorded
    at = f"{rows[-1].get('phase', '')} epoch {rows[-1]['epoch']}".strip()
    return Progress(at, sum(seconds) if seconds else None,
                    statistics.median(seconds[-PACE_EPOCHS:]) if seconds else None)


def left_seconds(s: JobState) -> float | None:
    """A job's expected cost still to come: its estimate, less what a started job's log says its
    epochs took (a log cut short by an earlier resume undercounts, so this errs high)."""
    if s.estimate is None:
        return None
    done = s.progress.logged if s.progress is not None and s.progress.logged is not None else 0.0
    return max(s.estimate.seconds - done, 0.0)


def overrun(s: JobState) -> bool:
    """A started job whose log already holds more seconds than its estimate."""
    return (s.estimate is not None and s.progress is not None and s.progress.logged is not None
            and s.progress.logged >= s.estimate.seconds)


def _identity_but_seed(overrides: list[str]) -> tuple[str, ...]:
    return tuple(o for o in overrides if not o.startswith("seed="))


def load_rows(jobs: list[Job]) -> dict[Path, dict]:
    """Every result file under the jobs' row folders (every seed, not only those asked for),
    each read once."""
    folders = sorted({j.result_path.parent for j in jobs})
    return {p: r for f in folders for p in sorted(f.glob("seed*.json")) if (r := results.load(p)) is not None}


def row_estimates(jobs: list[Job], loaded: dict[Path, dict]) -> dict[str, Estimate]:
    """Per row: the cost of its finished seeds, those of ``loaded`` in its folder whose job is the
    same but for the seed."""
    out: dict[str, Estimate] = {}
    for j in {j.row.id: j for j in jobs}.values():
        same = _identity_but_seed(j.identity_overrides())
        rs = [r for p, r in loaded.items() if p.parent == j.result_path.parent
              and _identity_but_seed(r.get("overrides") or []) == same and results.job_seconds(r) is not None]
        if rs:
            out[j.row.id] = Estimate(statistics.median(results.job_seconds(r) for r in rs), len(rs),
                                     frozenset(r.get("threads") for r in rs))
    return out


def job_states(plan: Plan) -> list[JobState]:
    loaded = load_rows(plan.jobs)
    estimates = row_estimates(plan.jobs, loaded)
    locks = held_locks()
    out = []
    for j in plan.jobs:
        if j.result_path in loaded:
            out.append(JobState(j, DONE, results.job_seconds(loaded[j.result_path]), None))
        elif (j.run_dir / "metrics.json").is_file():  # finished; its result file is written on the next run
            out.append(JobState(j, DONE, None, None))
        else:
            state = RUNNING if held_elsewhere(j, locks) else TO_RUN
            out.append(JobState(j, state, None, estimates.get(j.row.id), progress(j)))
    return out


def hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _threads(ts: frozenset) -> str:
    known = sorted(t for t in ts if t is not None)
    if not known:
        return "threads not recorded"
    return f"{'/'.join(map(str, known))} thread{'s' if known != [1] else ''}" + (
        " (some not recorded)" if None in ts else "")


def describe(s: JobState) -> str:
    j = s.job
    line = f"{s.state:7s} {j.name}: kdrec {j.stage} {' '.join(j.overrides)} seed={j.seed}  [{j.signature}]"
    if s.state == DONE:
        return line + (f"  {hours(s.seconds)}" if s.seconds is not None else "")
    if (info := parked.parked(j)) is not None:
        line += f"  parked in results/ at {info.get('at')}"
    if s.progress:
        pr = s.progress
        line += f"  at {pr.at}" + (f" ({pr.pace:.0f} s/epoch lately, {hours(pr.logged)} logged)"
                                   if pr.pace is not None else "")
    if s.estimate is None:
        return line + "  no finished seed of its row to estimate from"
    e = s.estimate
    seeds = f"{e.seeds} finished seed{'s' * (e.seeds > 1)}"
    text = f"~{hours(e.seconds)} (median of {seeds}, {_threads(e.threads)})"
    if overrun(s):  # "~0 s left" would be false: it still runs
        return line + f"  past its row's {text}; left unknown"
    if s.progress is not None and s.progress.logged is not None:
        text = f"~{hours(left_seconds(s))} left of " + text
    return line + "  " + text


def summary(states: list[JobState]) -> str:
    """One line: counts, and the job-hours left (a started job's estimate less the seconds its
    log says it has run: :func:`left_seconds`)."""
    n = {k: sum(s.state == k for s in states) for k in (DONE, RUNNING, TO_RUN)}
    left = [s for s in states if s.state != DONE]
    known = [left_seconds(s) for s in left if s.estimate is not None]
    unknown = sorted({s.job.row.id for s in left if s.estimate is None})
    text = f"{len(states)} jobs: {n[DONE]} done, {n[RUNNING]} running elsewhere, {n[TO_RUN]} to run"
    if known:
        text += (f"; left: ~{hours(sum(known))} of jobs by the wall time of their rows' finished seeds"
                 " (as recorded, whatever else ran on that machine then), less what started jobs logged")
        if past := sum(overrun(s) for s in left):
            text += f" ({past} past that estimate, counted as 0)"
    if unknown:
        names = ", ".join(unknown[:MAX_NAMED]) + (f" and {len(unknown) - MAX_NAMED} more" if len(unknown) > MAX_NAMED else "")
        text += f"; no estimate for {len(left) - len(known)} job(s), row(s) {names}"
    return text
