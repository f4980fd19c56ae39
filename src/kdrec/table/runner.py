"""Running a table's missing jobs: each job is one ``kdrec`` subprocess (``kdrec.table.child``,
which dies with the table), N at a time, torch threads split between them. Jobs that share a
teacher wait until one of them has trained it (the teacher cache's lock would make them wait
anyway, but a worker blocked on a lock is a worker lost), so teacher rows go first and the other
workers pick jobs of other teachers meanwhile. A job counts as done when its process exited 0
and its run directory holds ``metrics.json`` (written last by every stage); then its result file
is written. Latency is measured afterwards, serially, with no training running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from kdrec.errors import KdrecError
from kdrec.table import parked, results
from kdrec.table.jobs import Job, Plan

TAIL_LINES = 15


def is_done(job: Job) -> bool:
    """Done if its result file exists; a finished run directory without one (the table was
    stopped between the two) gets its result file now."""
    if results.load(job.result_path) is not None:
        return True
    if (job.run_dir / "metrics.json").is_file():
        results.save(job.result_path, results.from_run(job, seconds=None))
        return True
    return False


def order(jobs: list[Job]) -> list[Job]:
    """Seed by seed (an interrupted table holds complete seeds), teacher rows first."""
    seeds = {s: i for i, s in enumerate(dict.fromkeys(j.seed for j in jobs))}
    rows = {r: i for i, r in enumerate(dict.fromkeys(j.row.id for j in jobs))}
    return sorted(jobs, key=lambda j: (seeds[j.seed], j.stage != "pretrain-teacher", rows[j.row.id]))


class Scheduler:
    """Hands out jobs in order; while a teacher is not known to exist, only one job of its key runs
    (it trains the teacher); the key's other jobs start once it succeeded (if it failed, the
    next one tries)."""

    def __init__(self, jobs: list[Job], ready_keys: set[str] = frozenset()):
        self._pending = list(jobs)
        self._ready = set(ready_keys)
        self._training: dict[str, Job] = {}
        self._cond = threading.Condition()
        self._stopped = False

    def take(self) -> Job | None:
        with self._cond:
            while True:
                if self._stopped or not self._pending:
                    return None
                for i, job in enumerate(self._pending):
                    key = job.teacher_key
                    if key is None or key in self._ready:
                        return self._pending.pop(i)
                    if key not in self._training:
                        self._training[key] = job
                        return self._pending.pop(i)
                self._cond.wait()

    def finish(self, job: Job, ok: bool) -> None:
        with self._cond:
            key = job.teacher_key
            if key is not None and self._training.get(key) is job:
                del self._training[key]
                if ok:
                    self._ready.add(key)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


@dataclass
class Outcome:
    ran: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, str]] = field(default_factory=list)
    interrupted: list[Job] = field(default_factory=list)
    busy: list[Job] = field(default_factory=list)  # run by another process meanwhile


class Launcher:
    """Starts job processes and can stop them all (Ctrl-C)."""

    def __init__(self, env: dict | None = None):
        self.env = env
        self._live: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self.stopping = False

    def run(self, stage: str, overrides: list[str], run_dir: Path) -> tuple[int, Path]:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = run_dir / "job.log"
        argv = [sys.executable, "-m", "kdrec.table.child", str(os.getpid()), stage, *overrides,
                f"hydra.run.dir={run_dir}"]
        with open(log, "ab") as fh:
            fh.write(f"\n$ kdrec {stage} {' '.join(overrides)} hydra.run.dir={run_dir}\n".encode())
            fh.flush()
            with self._lock:
                if self.stopping:
                    return -signal.SIGINT, log
                proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=self.env)
                self._live[proc.pid] = proc
            try:
                rc = proc.wait()
            finally:
                with self._lock:
                    self._live.pop(proc.pid, None)
        return rc, log

    def stop_all(self, grace: float = 10.0) -> None:
        with self._lock:
            self.stopping = True
            procs = list(self._live.values())
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + grace
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()


def claim_job(job: Job) -> FileLock | None:
    """The job's lock (held while it runs), or None if another process holds it."""
    job.run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(job.lock_path), is_singleton=False, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def tail(log: Path, n: int = TAIL_LINES) -> str:
    try:
        with open(log, "rb") as fh:
            lines = deque(fh, maxlen=n)
    except OSError:
        return ""
    return b"".join(lines).decode("utf-8", "replace").rstrip()


def store_teacher(job: Job, store: Path) -> Path:
    """Copy the teacher a finished pretrain-teacher job used into the teacher store."""
    from kdrec.teachers import store_teacher as copy_entry

    tdir = results.read_json(job.run_dir / "metrics.json", "metrics file").get("teacher_dir")
    if not tdir:
        raise KdrecError(f"{job.run_dir / 'metrics.json'} names no teacher_dir to store")
    return copy_entry(Path(tdir), store)


def job_overrides(job: Job, threads: int) -> list[str]:
    # defaults first: a user's own device.threads or trainer.progress among the overrides wins
    return [f"device.threads={threads}", "trainer.progress=false", "resume=true", *job.overrides,
            f"seed={job.seed}"]


def run_jobs(plan: Plan, workers: int, threads: int, say) -> Outcome:
    """Run every job of ``plan`` that is not done, ``workers`` at a time."""
    out = Outcome()
    todo = [j for j in plan.jobs if not is_done(j)]
    done = [j for j in plan.jobs if j not in todo]
    say(f"table {plan.spec.name}: {len(plan.jobs)} jobs, {len(done)} done, {len(todo)} to run"
        + (f" ({workers} workers, {threads} threads each)" if todo else ""))
    if not todo:
        return out
    # a teacher exists locally if a job of its key finished in this outputs tree
    ready = {j.teacher_key for j in done if j.teacher_key and (j.run_dir / "metrics.json").is_file()}
    sched = Scheduler(order(todo), ready)
    launcher = Launcher()
    counter = {"started": 0}
    lock = threading.Lock()

    def work() -> None:
        while (job := sched.take()) is not None:
            try:
                run_one(job)
            except Exception as exc:  # e.g. a full disk: this job failed, the others go on
                with lock:
                    out.failed.append((job, f"{type(exc).__name__}: {exc}"))
                say(f"  FAILED {job.name}: {type(exc).__name__}: {exc}")
                sched.finish(job, False)

    def run_one(job: Job) -> None:
        with lock:
            counter["started"] += 1
            k = counter["started"]
        claim = claim_job(job)
        if claim is None:  # another `kdrec table` (here or on a machine sharing the tree) runs it
            say(f"[{k}/{len(todo)}] {job.name}: skipped, another process runs it ({job.run_dir})")
            with lock:
                out.busy.append(job)
            sched.finish(job, False)
            return
        try:
            if is_done(job):  # it finished there while this table was planning
                sched.finish(job, True)
                return
            say(f"[{k}/{len(todo)}] {job.name}: {job.stage} {' '.join(job.overrides)}")
            if (at := parked.restore(job)) is not None:
                say(f"  resumes from its parked checkpoints ({at}, {parked.entry(job)})")
            git = results.git_commit()  # what the job's process loads, not the tree when it ends
            t0 = time.time()
            rc, log = launcher.run(job.stage, job_overrides(job, threads), job.run_dir)
            secs = time.time() - t0
            ok = rc == 0 and (job.run_dir / "metrics.json").is_file()
            if ok:
                record = results.from_run(job, seconds=round(secs, 1), git=git, threads=threads)
                if plan.spec.cfg.store_teachers and job.stage == "pretrain-teacher" and plan.teacher_store:
                    entry = store_teacher(job, plan.teacher_store)
                    say(f"  teacher stored: {entry} (commit it with the results)")
                results.save(job.result_path, record)
                if parked.remove(job):
                    say(f"  its parked checkpoints are no longer needed: {parked.entry(job)} deleted (commit that)")
        finally:
            claim.release()
        with lock:
            if ok:
                out.ran.append(job)
            elif launcher.stopping:
                out.interrupted.append(job)
            else:
                out.failed.append((job, str(log)))
        if ok:
            say(f"  done {job.name} in {secs:.0f} s -> {job.result_path}")
        elif not launcher.stopping:
            say(f"  FAILED {job.name} (exit {rc}); log {log}:\n{tail(log)}")
        sched.finish(job, ok)

    pool = [threading.Thread(target=work, name=f"table-worker-{i}", daemon=True) for i in range(workers)]
    for t in pool:
        t.start()
    try:
        for t in pool:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        sched.stop()
        launcher.stop_all()
        for t in pool:
            t.join(15)
        raise
    return out


def machine_overrides(extra: list[str]) -> list[str]:
    """The user's overrides that a benchmark of a finished run still needs (where things are, which device)."""
    return [o for o in extra if o.lstrip("+~").startswith(("paths", "device"))]


def measure_latency(plan: Plan, mode: str, say) -> list[str]:
    """One ``benchmark-flops run=<dir>`` per row (on its lowest finished seed), serially, after all
    training: latency and the load average go into that job's result file. Returns notes."""
    notes: list[str] = []
    if mode == "skip":
        return notes
    threads = plan.spec.cfg.latency_threads
    by_row: dict[str, list[Job]] = {}
    for j in plan.jobs:
        by_row.setdefault(j.row.id, []).append(j)
    launcher = Launcher()
    for row_id, jobs in by_row.items():
        done = [(j, r) for j in sorted(jobs, key=lambda j: j.seed) if (r := results.load(j.result_path))]
        if not done or (mode == "missing" and any(r.get("latency") for _, r in done)):
            continue
        local = [(j, r) for j, r in done if (j.run_dir / "metrics.json").is_file()]
        if not local:
            notes.append(f"latency of {row_id} not measured: none of its runs is in this outputs tree")
            continue
        job, res = local[0]
        bench_dir = job.run_dir / "benchmark"
        loadavg = os.getloadavg()
        say(f"latency {row_id} (seed {job.seed}, {threads} thread(s), load average {loadavg[0]:.2f})")
        rc, log = launcher.run("benchmark-flops", [*machine_overrides(plan.extra), f"run={job.run_dir}",
                                                   f"device.threads={threads}"], bench_dir)
        if rc != 0 or not (bench_dir / "flops.json").is_file():
            notes.append(f"latency of {row_id} failed (exit {rc}); log {log}")
            say(f"  FAILED benchmark of {row_id}; log {log}:\n{tail(log)}")
            continue
        flops = results.read_json(bench_dir / "flops.json", "benchmark file")
        results.save(job.result_path, results.add_latency(res, flops, loadavg, threads))
    return notes
