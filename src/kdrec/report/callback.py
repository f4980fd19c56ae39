"""Hydra callback: at the end of a ``-m`` sweep, run ``kdrec report`` on the sweep directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("kdrec")


class ReportOnSweepEnd(Callback):
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        if not any(sweep_dir.rglob("metrics.json")):
            return  # stages without metrics (data, benchmark-flops) have nothing to report
        from kdrec.errors import KdrecError
        from kdrec.report.collect import main as report

        try:
            report([str(sweep_dir)])
        except KdrecError as exc:  # a report problem must not fail a finished sweep
            log.warning("sweep report skipped: %s", exc)
