"""`kdrec table NAME --verify DIR`: a table's jobs run again from scratch under DIR (outputs,
caches, teachers and results of their own) and each new result is compared with the committed
result of the same job (same row, seed and signature).

Equal numbers are only to be expected where the two runs had the same setup: the machine record
(:func:`kdrec.table.results.machine`), the package versions and the torch threads, and a
committed result recorded from a committed tree (``git.dirty`` false). Under another
setup a difference is float drift, reported but not a failure; under the same setup it means the
command does not give the same numbers, and the verify fails."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

SETUP_KEYS = ("machine", "versions", "threads")


@dataclass(frozen=True)
class Check:
    job: str  # "<row> seed <k>"
    state: str  # "identical", "differs", "no committed result", "failed"
    detail: str = ""
    setup: str = ""  # "" when the setups agree, else what differs ("machine not recorded", ...)

    @property
    def failure(self) -> bool:
        """A difference the setup does not explain, or a job that did not finish."""
        return self.state == "failed" or (self.state == "differs" and not self.setup)


def setup_difference(committed: dict, fresh: dict) -> str:
    """What differs between the setups two results ran under ("" if nothing does)."""
    out = []
    for key in SETUP_KEYS:
        a, b = committed.get(key), fresh.get(key)
        if a is None and b is not None:
            out.append(f"{key} not recorded")
        elif a != b:
            out.append(f"{key}: " + _first_difference(a, b))
    if (committed.get("git") or {}).get("dirty"):
        out.append("recorded from an uncommitted tree (its code is not known)")
    return "; ".join(out)


def _first_difference(a, b, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    return f"{path + ' ' if path else ''}{a} -> {b}"


def _numbers(result: dict) -> dict[str, float | int]:
    """The figures a rerun should repeat: test and valid metrics, the best epoch and epochs run
    of each phase, and the teacher's test metrics."""
    m = result.get("metrics") or {}
    out: dict = {}
    for split in ("test", "valid"):
        out.update({f"{split}:{k}": v for k, v in (m.get(split) or {}).items()})
    for i, ph in enumerate(m.get("phases") or []):
        name = ph.get("phase", i)
        out.update({f"{name}:{k}": ph[k] for k in ("best_epoch", "epochs_run") if k in ph})
    out.update({f"teacher test:{k}": v for k, v in ((result.get("teacher") or {}).get("test") or {}).items()})
    return out


def _ordered(keys: set[str]) -> list[str]:
    """Test metrics first, then each phase's epochs, the teacher's and the valid metrics: what a
    reader checks first comes first in a shortened line."""
    rank = {"test": 0, "teacher test": 2, "valid": 3}
    return sorted(keys, key=lambda k: (rank.get(k.split(":")[0], 1), k))


def seed_spread(records: list[dict]) -> dict[str, tuple[float, int]]:
    """Per test metric, the standard deviation over one row's committed seeds and their number
    (metrics with fewer than 2 seeds left out): the scale a drift between machines is read on."""
    values: dict[str, list[float]] = {}
    for r in records:
        for k, v in ((r.get("metrics") or {}).get("test") or {}).items():
            if isinstance(v, (int, float)):
                values.setdefault(k, []).append(float(v))
    return {k: (statistics.stdev(v), len(v)) for k, v in values.items() if len(v) >= 2}


def _largest_move(a: dict, b: dict, spread: dict[str, tuple[float, int]]) -> str:
    moves = [(abs(b[f"test:{k}"] - a[f"test:{k}"]) / sd, k, n) for k, (sd, n) in spread.items()
             if sd > 0 and isinstance(a.get(f"test:{k}"), float) and isinstance(b.get(f"test:{k}"), float)]
    if not moves:
        return ""
    ratio, k, n = max(moves)
    return f"; largest test move {ratio:.2g}x the row's seed std ({k}, {n} seeds)"


def compare(job: str, committed: dict | None, fresh: dict | None,
            spread: dict[str, tuple[float, int]] | None = None) -> Check:
    """``spread``: :func:`seed_spread` of the job's row, to say how large a difference is."""
    if fresh is None:
        return Check(job, "failed", "the rerun left no result (see its log above)")
    if committed is None:
        return Check(job, "no committed result", "nothing to compare the rerun with")
    a, b = _numbers(committed), _numbers(fresh)
    changed = [k for k in _ordered(set(a) | set(b)) if a.get(k) != b.get(k)]
    setup = setup_difference(committed, fresh)
    if not changed:
        return Check(job, "identical", setup=setup)
    shown = [f"{k} {_fmt(a.get(k))} -> {_fmt(b.get(k))}" for k in changed[:4]]
    more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
    return Check(job, "differs", ", ".join(shown) + more + _largest_move(a, b, spread or {}), setup)


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def describe(c: Check) -> str:
    line = f"{c.job}: {c.state}"
    if c.detail:
        line += f": {c.detail}"
    if c.state in ("identical", "differs"):
        line += f" [{'other setup: ' + c.setup if c.setup else 'same setup'}]"
    return line


def summary(checks: list[Check]) -> str:
    n = len(checks)
    same = sum(c.state == "identical" for c in checks)
    drift = sum(c.state == "differs" and bool(c.setup) for c in checks)
    bad = [c for c in checks if c.failure]
    parts = [f"{same} identical", f"{drift} differ under another setup (float drift, expected)"]
    if bad:
        parts.append(f"{len(bad)} failed or differ under the same setup: " + ", ".join(c.job for c in bad))
    missing = sum(c.state == "no committed result" for c in checks)
    if missing:
        parts.append(f"{missing} without a committed result")
    return f"verify: {n} job(s): " + "; ".join(parts)
