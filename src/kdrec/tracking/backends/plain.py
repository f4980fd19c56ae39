"""``logger=csv``: one row per epoch and phase in ``<run dir>/epochs.csv``; ``logger=none``."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from kdrec.artifacts import atomic_write_text
from kdrec.tracking.base import RunInfo, RunLogger, register_logger

log = logging.getLogger("kdrec")


@dataclass
class CsvConfig:
    filename: str = "epochs.csv"  # in the run directory


@register_logger("csv", config=CsvConfig)
class CsvLogger(RunLogger):
    """Columns ``phase, epoch`` then every figure in first-seen order (``train_loss``, ``lr``,
    ``epoch_seconds``, ``valid_<metric>``: empty on epochs without validation). The file is
    rewritten whole, atomically, after each epoch: it is never half-written, and a figure first
    seen late still gets its column. A resumed run (``resume=true``) continues the file its
    earlier runs wrote; an epoch logged again (one its checkpoint did not keep) replaces the
    earlier rows of that phase from that epoch on."""

    def __init__(self, path: Path, resume: bool = False):
        self.path = path
        self.rows: list[dict] = []
        self.columns: dict[str, None] = {"phase": None, "epoch": None}
        if resume and path.is_file():
            self._continue(path)

    def _continue(self, path: Path) -> None:
        """Take over the rows of an earlier run; a file that cannot be read is kept aside (renamed
        ``<name>.unreadable``), never overwritten, and the log starts afresh."""
        try:
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                rows = [{**r, "epoch": int(r["epoch"])} for r in reader]
                fields = reader.fieldnames or []
        except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as exc:
            aside = path.with_name(path.name + ".unreadable")
            path.replace(aside)
            log.warning("%s cannot be continued (%s): kept as %s, a new one is started", path, exc, aside)
            return
        self.columns.update(dict.fromkeys(fields))
        self.rows = rows

    @classmethod
    def for_run(cls, info: RunInfo, filename: str = "epochs.csv") -> "CsvLogger":
        return cls(info.out / filename, resume=bool(info.cfg.get("resume", False)))

    @classmethod
    def open(cls, conf: CsvConfig, info: RunInfo):
        return [cls.for_run(info, conf.filename)]

    def log_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        self.rows = [r for r in self.rows if r["phase"] != phase or r["epoch"] < epoch]
        row = {"phase": phase, "epoch": epoch, **metrics}
        self.columns.update(dict.fromkeys(row))
        self.rows.append(row)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(self.columns), restval="", lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


@dataclass
class NoneConfig:
    pass


@register_logger("none", config=NoneConfig)
class NoLogger(RunLogger):
    @classmethod
    def open(cls, conf: NoneConfig, info: RunInfo):
        return []
