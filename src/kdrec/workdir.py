"""A run's own work directory for checkpoints in progress (what ``resume=true`` continues from).

Runs with the same config signature share ``<paths.work>/distill-<signature>/`` but each holds its
own subdirectory, locked for its lifetime, so identical runs started together never share or
delete each other's checkpoints. ``resume=true`` takes over the newest subdirectory whose owner
is gone; a fresh run discards such leftovers."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from filelock import FileLock, Timeout


class WorkDir:
    def __init__(self, path: Path, lock: FileLock):
        self.path, self._lock = path, lock

    def release(self, remove: bool) -> None:
        if remove:
            shutil.rmtree(self.path, ignore_errors=True)
        self._lock.release()
        if remove:
            Path(self._lock.lock_file).unlink(missing_ok=True)
            try:
                self.path.parent.rmdir()  # the signature folder, once no run uses it
            except OSError:
                pass


def _try_lock(d: Path) -> FileLock | None:
    lock = FileLock(str(d) + ".lock", is_singleton=False, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def claim(root: Path, resume: bool) -> WorkDir:
    root.mkdir(parents=True, exist_ok=True)
    orphans = []  # subdirectories whose run is gone (their lock is free)
    for d in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True):
        lock = _try_lock(d)
        if lock is not None:
            orphans.append((d, lock))
    chosen = None
    if resume:
        for d, lock in orphans:
            if any(d.glob("*_last.pt")):
                chosen = WorkDir(d, lock)
                break
    for d, lock in orphans:
        if chosen is not None and d == chosen.path:
            continue
        if not resume:  # a fresh run: an interrupted identical run's leftovers are discarded
            shutil.rmtree(d, ignore_errors=True)
            lock.release()
            Path(lock.lock_file).unlink(missing_ok=True)
        else:
            lock.release()
    if chosen is not None:
        return chosen
    d = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    d.mkdir()
    lock = _try_lock(d)
    assert lock is not None  # a name with our pid: nobody else holds it
    return WorkDir(d, lock)
