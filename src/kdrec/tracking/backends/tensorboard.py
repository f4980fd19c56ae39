"""``logger=tensorboard``: event files in ``<run dir>/tensorboard/`` (``tensorboard --logdir
outputs/`` shows every run): a scalar ``<phase>/<figure>`` per epoch, the final figures as
``final/<figure>`` with the flattened config in the HParams tab, the resolved config as text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from kdrec.errors import ConfigError
from kdrec.tracking.backends.plain import CsvLogger
from kdrec.tracking.base import RunInfo, RunLogger, flat_config, register_logger


@dataclass
class TensorBoardConfig:
    log_dir: str | None = None  # null: <run dir>/tensorboard
    epochs_csv: bool = True  # also write <run dir>/epochs.csv


@register_logger("tensorboard", config=TensorBoardConfig)
class TensorBoardLogger(RunLogger):
    def __init__(self, log_dir: Path, info: RunInfo):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("logger=tensorboard needs the tensorboard package: "
                              "pip install 'kdrec[tracking]' (or pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.hparams = flat_config(info.cfg)
        self.final: dict[str, float] = {}
        self.writer.add_text("config", "```\n" + OmegaConf.to_yaml(info.cfg, resolve=True) + "```", 0)
        self.writer.add_text("run", f"{info.name}: {info.out}", 0)

    @classmethod
    def open(cls, conf: TensorBoardConfig, info: RunInfo):
        log_dir = Path(conf.log_dir) if conf.log_dir else info.out / "tensorboard"
        return [cls(log_dir, info), *([CsvLogger.for_run(info)] if conf.epochs_csv else [])]

    def log_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(f"{phase}/{k}", v, epoch)

    def log_result(self, metrics: dict[str, float]) -> None:
        self.final.update(metrics)

    def close(self, status: str) -> None:
        self.writer.add_text("status", status, 0)
        if self.final:  # the HParams tab: config against final figures (also written as scalars)
            self.writer.add_hparams(self.hparams, {f"final/{k}": v for k, v in self.final.items()},
                                    run_name=".")
        self.writer.close()
