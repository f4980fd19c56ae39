"""``logger=csv``: one row per epoch and phase in ``<run dir>/epochs.csv``; ``logger=none``."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from kdrec.artifacts import atomic_write_text
from kdrec.tracking.base import RunInfo, RunLogger, register_logger


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
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                self.columns.update(dict.fromkeys(reader.fieldnames or []))
                self.rows = list(reader)

    @classmethod
    def for_run(cls, info: RunInfo, filename: str = "epochs.csv") -> "CsvLogger":
        return cls(info.out / filename, resume=bool(info.cfg.get("resume", False)))

    @classmethod
    def open(cls, conf: CsvConfig, info: RunInfo):
        return [cls.for_run(info, conf.filename)]

    def log_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        self.rows = [r for r in self.rows if r["phase"] != phase or int(r["epoch"]) < epoch]
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
