"""One tracking session per job: the configured backend(s) built from ``cfg.logger``, the
training loop's per-epoch hook, the final figures, and a close with the job's status."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from kdrec.schema import build_dataclass
from kdrec.tracking.base import LOGGERS, RunInfo, RunLogger, flat_numbers
from kdrec.tracking.objective import check_direction

log = logging.getLogger("kdrec")


class _Scoped:
    """The loop's ``EpochLogger`` with a role before the phase name (``teacher/train``)."""

    def __init__(self, loggers: list[RunLogger], prefix: str):
        self._loggers, self._prefix = loggers, prefix

    def log_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        for lg in self._loggers:
            lg.log_epoch(f"{self._prefix}/{phase}", epoch, metrics)


class Session:
    def __init__(self, backends: list[RunLogger]):
        self.backends = backends
        self.closed = False

    @property
    def loggers(self) -> tuple[RunLogger, ...]:
        """What ``fit(..., loggers=)`` takes: the epoch figures under the phase's own name."""
        return tuple(self.backends)

    def scoped(self, prefix: str) -> tuple[_Scoped, ...]:
        """The same backends with ``prefix/`` before each phase name (a distill run's teacher)."""
        return (_Scoped(self.backends, prefix),) if self.backends else ()

    def result(self, metrics: dict) -> None:
        """Final figures: the numeric leaves of a stage's result, flattened (``test_auc``,
        ``teacher_test_auc``, ``flops_student_flops_per_sample``, ...)."""
        flat = flat_numbers(metrics)
        for b in self.backends:
            b.log_result(flat)

    def close(self, status: str = "FINISHED") -> None:
        if self.closed:
            return
        self.closed = True
        for b in self.backends:
            try:
                b.close(status)
            except Exception as exc:  # noqa: BLE001 - a tracker outage must not lose a finished run
                log.warning("closing the %s logger failed: %s", type(b).__name__, exc)


def _sweep_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    return Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None


def build_backends(cfg: DictConfig, info: RunInfo) -> list[RunLogger]:
    """The loggers ``cfg.logger`` names (none when the config has no ``logger`` section)."""
    if "logger" not in cfg or cfg.logger is None:
        return []
    values = OmegaConf.to_container(cfg.logger, resolve=True)
    name = values.pop("name", None)
    entry = LOGGERS.entry(str(name))
    conf = build_dataclass(entry.meta["config"], values, f"logger ({name})")
    return list(entry.obj.open(conf, info))


def open_session(cfg: DictConfig, stage: str, out: Path, source: Path | None = None) -> Session:
    check_direction(cfg.dataset.name)  # a tuner told to minimise AUC fails before any work
    info = RunInfo(stage, Path(out), cfg, Path(source) if source else None, _sweep_dir())
    return Session(build_backends(cfg, info))


@contextmanager
def session(cfg: DictConfig, stage: str, out: Path, source: Path | None = None) -> Iterator[Session]:
    """``with session(cfg, "distill", out) as tr: fit(..., loggers=tr.loggers); tr.result(m)``:
    closed as ``FINISHED``, ``FAILED`` (an error) or ``KILLED`` (Ctrl-C)."""
    s = open_session(cfg, stage, out, source)
    try:
        yield s
    except KeyboardInterrupt:
        s.close("KILLED")
        raise
    except BaseException:
        s.close("FAILED")
        raise
    s.close("FINISHED")


def record(cfg: DictConfig, stage: str, out: Path, metrics: dict, source: Path | None = None) -> None:
    """A whole session for a stage that does not train (evaluate, export, benchmark-flops):
    its figures and the run directory's result files, closed at once."""
    with session(cfg, stage, out, source) as s:
        s.result(metrics)
