"""kdrec.cache: an entry is computed once under a lock, complete or absent, whatever crashes."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdrec.cache import MARKER, cached_dir, cached_torch, clean_stale_temps, is_complete


class Crash(Exception):
    pass


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_dir_entry_appears_whole_or_not_at_all(tmp_path):
    entry = tmp_path / "teacher-abc"

    def half(tmp: Path) -> None:  # crash after the checkpoint, before the metrics
        (tmp / "checkpoint.pt").write_bytes(b"x")
        raise Crash

    with pytest.raises(Crash):
        cached_dir(entry, half)
    assert not entry.exists() and list(tmp_path.iterdir()) == [tmp_path / ".teacher-abc.lock"]

    calls = []

    def whole(tmp: Path) -> None:
        calls.append(1)
        (tmp / "checkpoint.pt").write_bytes(b"x")
        (tmp / "metrics.json").write_text("{}")

    assert cached_dir(entry, whole) == entry and is_complete(entry)
    cached_dir(entry, whole)
    assert calls == [1], "a complete entry is reused, never rebuilt"


def test_an_incomplete_leftover_is_rebuilt_not_read(tmp_path):
    entry = tmp_path / "teacher-abc"
    entry.mkdir()
    (entry / "checkpoint.pt").write_bytes(b"old")  # the old crash window: checkpoint, no metrics
    cached_dir(entry, lambda tmp: (tmp / "metrics.json").write_text("{}"))
    assert is_complete(entry) and not (entry / "checkpoint.pt").exists()


def test_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = _dead_pid()
    stale_dir = tmp_path / f".csv-123.tmp-{dead}-abcd1234"  # a killed `kdrec data`
    stale_dir.mkdir()
    stale_file = tmp_path / f".logits.pt.tmp-{dead}-xyz_0"  # a killed atomic write
    stale_file.write_bytes(b"partial")
    live = tmp_path / f".other.tmp-{os.getpid()}-abcd1234"  # ours: still being written
    live.mkdir()
    clean_stale_temps(tmp_path)
    assert not stale_dir.exists() and not stale_file.exists() and live.exists()
    # building an entry under its lock also clears its own leftovers, whoever wrote them
    own = tmp_path / f".entry.tmp-{os.getpid()}-deadbeef"
    own.mkdir()
    cached_dir(tmp_path / "entry", lambda tmp: None)
    assert not own.exists()


def test_file_entry_crash_leaves_nothing_and_stale_meta_recomputes(tmp_path):
    path = tmp_path / "cache" / "logits_train.pt"

    def boom():
        raise Crash

    with pytest.raises(Crash):
        cached_torch(path, boom, {"rows": 3})
    assert not path.exists()
    v = cached_torch(path, lambda: torch.arange(3.0), {"rows": 3})
    assert torch.equal(v, torch.arange(3.0))
    # the same name for other data (another row count) is stale: recomputed, not returned
    w = cached_torch(path, lambda: torch.arange(4.0), {"rows": 4})
    assert torch.equal(w, torch.arange(4.0))


def _worker(path: str, counter: str, start: float) -> None:
    while time.time() < start:
        time.sleep(0.001)

    def compute():
        with open(counter, "a") as fh:
            fh.write("x")
        time.sleep(0.5)  # long enough for the others to arrive while it computes
        return torch.ones(5)

    v = cached_torch(Path(path), compute, {"k": 1})
    assert torch.equal(v, torch.ones(5))


def test_concurrent_processes_compute_once(tmp_path):
    path, counter = tmp_path / "entry.pt", tmp_path / "count"
    start = time.time() + 1.0
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(path), str(counter), start)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert counter.read_text() == "x", "computed exactly once"
    assert MARKER not in os.listdir(tmp_path)
