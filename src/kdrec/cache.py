"""One cache mechanism for everything computed once and reused: teachers, teacher logits,
retrieval results, top-K teacher lists, HetComp trajectories, ROK targets, encoded datasets.

An entry is computed under a file lock (a second process with the same key waits, then reuses
the entry; nothing is computed twice) and is complete or absent: a file entry appears by an
atomic rename, a directory entry is built in a temporary directory that is renamed into place
with a completion marker as the single commit step. Temporaries of dead processes are removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from filelock import FileLock, Timeout

from kdrec.artifacts import atomic_torch_save, torch_load

log = logging.getLogger("kdrec")
T = TypeVar("T")
MARKER = ".complete"  # written last into a directory entry: the entry is whole
_TMP = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-z_]+$")


def lock_path(entry: Path) -> Path:
    return entry.parent / f".{entry.name}.lock"


@contextmanager
def entry_lock(entry: Path, what: str = "") -> Iterator[None]:
    """Hold the lock of ``entry`` (blocking; says once that it waits for another process)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(entry)), is_singleton=False, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for %s: another process is computing it (lock %s)", what or entry,
                 lock_path(entry))
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(parent: Path, only: str | None = None) -> None:
    """Remove temporaries ``.<name>.tmp-<pid>-<hex>`` of processes that no longer run (all of
    ``only``'s when the caller holds that entry's lock: nobody else can be writing them)."""
    if not parent.is_dir():
        return
    for p in parent.iterdir():
        m = _TMP.match(p.name)
        if not m:
            continue
        mine = only is not None and p.name.startswith(f".{only}.tmp-")
        if mine or not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def temp_sibling(entry: Path) -> Path:
    return entry.parent / f".{entry.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_complete(directory: Path) -> bool:
    return (directory / MARKER).is_file()


def cached_dir(entry: Path, build: Callable[[Path], None], what: str = "") -> Path:
    """The directory ``entry``, built by ``build(tmp_dir)`` once if it is not complete yet."""
    entry = Path(entry)
    if is_complete(entry):
        return entry
    with entry_lock(entry, what):
        if is_complete(entry):
            return entry
        clean_stale_temps(entry.parent, only=entry.name)
        tmp = temp_sibling(entry)
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            (tmp / MARKER).write_text(json.dumps({"pid": os.getpid(), "time": time.time()}) + "\n")
            if entry.exists():  # an incomplete leftover (a crash before this layout, or a manual copy)
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return entry


def cached_file(path: Path, compute: Callable[[], T], *, save: Callable[[Path, T], None],
                load: Callable[[Path], T | None], what: str = "") -> T:
    """``load(path)`` if it gives a value (None: missing or stale), else ``compute()`` once under
    the entry's lock and ``save`` it (``save`` must write atomically)."""
    path = Path(path)
    if path.is_file():
        value = load(path)
        if value is not None:
            return value
    with entry_lock(path, what):
        if path.is_file():
            value = load(path)
            if value is not None:
                return value
        clean_stale_temps(path.parent, only=path.name)
        value = compute()
        save(path, value)
        return value


def cached_torch(path: Path | None, compute: Callable[[], Any], meta: dict | None = None,
                 what: str = "") -> Any:
    """A torch-serialisable value (tensor, dict of tensors) cached at ``path`` with ``meta``
    (e.g. the row count or data signature it was computed for; another meta means stale).
    ``path=None`` computes without caching."""
    if path is None:
        return compute()
    meta = dict(meta or {})

    def load(p: Path):
        st = torch_load(p)
        return st["value"] if st.get("meta") == meta else None

    def save(p: Path, value) -> None:
        atomic_torch_save(p, {"meta": meta, "value": _cpu(value)})

    return cached_file(path, compute, save=save, load=load, what=what or path.name)


def _cpu(value):
    if hasattr(value, "cpu"):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu(v) for v in value)
    return value
