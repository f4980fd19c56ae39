"""Checkpoints of unfinished table jobs, parked in ``results/`` so that a job longer than one
machine's life goes on elsewhere instead of starting over (outputs/ is local; results/ is
committed). ``kdrec table NAME --park`` copies each unfinished distill job's checkpoints in progress
(every phase's ``*_last.pt`` and ``*_best.pt``) and its ``epochs.csv`` into
``<results>/<table>/<row>/seed<k>-<sig>.parked/``; a later ``kdrec table`` whose outputs tree has no
checkpoint of that job copies them back into the job's work directory, where ``resume=true``
continues them exactly, and deletes the entry once the job's result file is written.

A running job can be parked: its files are written atomically one by one, so the copy is checked
(each phase's best checkpoint is the epoch its last checkpoint calls best) and taken again if an
epoch ended in between. Teachers are not parked: the long ones go to the teacher store. Nor are
HetComp's trajectories (95 MB a Gowalla seed): on another machine they are trained again."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kdrec.artifacts import atomic_write_json, torch_load
from kdrec.errors import KdrecError
from kdrec.table.jobs import Job

MANIFEST = "parked.json"  # written last: an entry without it is incomplete and never restored
LOG = "epochs.csv"
TRIES = 5


@dataclass(frozen=True)
class Parked:
    path: Path
    at: str  # e.g. "distill epoch 212" (the 1-based epoch its last checkpoint holds)
    size: int  # bytes


def entry(job: Job) -> Path:
    return job.result_path.with_suffix(".parked")


def live_dir(job: Job) -> Path | None:
    """The newest work subdirectory of ``job`` holding a checkpoint in progress."""
    if job.work_dir is None or not job.work_dir.is_dir():
        return None
    dirs = [d for d in job.work_dir.iterdir() if d.is_dir() and any(d.glob("*_last.pt"))]
    return max(dirs, key=lambda d: d.stat().st_mtime) if dirs else None


def _check(d: Path) -> str:
    """Where the checkpoints in ``d`` stand ("<phase> epoch N"); a KdrecError if a phase's best
    checkpoint is not the epoch its last checkpoint calls best (an epoch ended while copying)."""
    at = []
    for last_path in sorted(d.glob("*_last.pt"), key=lambda p: p.stat().st_mtime):
        phase = last_path.name[: -len("_last.pt")]
        last = torch_load(last_path)
        best_epoch = last.get("best_epoch", -1)  # 0-based, as the best checkpoint's "epoch"
        best_path = d / f"{phase}_best.pt"
        if best_epoch >= 0:
            if not best_path.is_file() or torch_load(best_path).get("epoch") != best_epoch:
                raise KdrecError(f"{d}: {best_path.name} is not epoch {best_epoch + 1}, which {last_path.name} calls best")
        at.append(f"{phase} {'finished' if last.get('finished') else 'epoch'}"
                  + ("" if last.get("finished") else f" {last['epoch'] + 1}"))
    if not at:
        raise KdrecError(f"{d}: no *_last.pt checkpoint")
    return at[-1]


def _copy_files(src: Path, dst: Path) -> None:
    for f in sorted(src.glob("*.pt")):
        shutil.copy2(f, dst / f.name)


def park(job: Job) -> Parked | None:
    """Copy ``job``'s checkpoints in progress into its entry, replacing an older one; None if it
    has none here."""
    src = live_dir(job)
    if src is None:
        return None
    dest = entry(job)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    for attempt in range(TRIES):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _copy_files(src, tmp)
        if (job.run_dir / LOG).is_file():
            shutil.copy2(job.run_dir / LOG, tmp / LOG)
        try:
            at = _check(tmp)
            break
        except KdrecError:
            if attempt == TRIES - 1:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            time.sleep(1.0)
    atomic_write_json(tmp / MANIFEST, {"job": job.name, "signature": job.signature, "at": at,
                                       "work": job.work_dir.name, "parked": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return Parked(dest, at, sum(f.stat().st_size for f in dest.iterdir()))


def parked(job: Job) -> dict | None:
    """The manifest of ``job``'s complete entry, if it has one."""
    try:
        return json.loads((entry(job) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def restore(job: Job) -> str | None:
    """Copy ``job``'s parked checkpoints into a new work subdirectory (where ``resume=true`` takes
    them over) unless this outputs tree has checkpoints of its own; returns where they stand."""
    info = parked(job)
    if info is None or job.work_dir is None or live_dir(job) is not None:
        return None
    src = entry(job)
    job.work_dir.mkdir(parents=True, exist_ok=True)
    tmp = job.work_dir.parent / f".{job.work_dir.name}.parked-{os.getpid()}"  # outside: never claimed half-copied
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _copy_files(src, tmp)
    tmp.rename(job.work_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-parked")  # whole, or not there
    if (src / LOG).is_file():  # the log of the epochs the checkpoint holds (a local one is older)
        job.run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / LOG, job.run_dir / LOG)
    return str(info.get("at", "?"))


def remove(job: Job) -> bool:
    """Delete ``job``'s entry (its result file is written); whether there was one."""
    d = entry(job)
    if not d.exists():
        return False
    shutil.rmtree(d)
    return True
