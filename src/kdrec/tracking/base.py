"""What every tracking backend implements, the job it tracks, and the flattening of configs and
result dicts into the flat names trackers store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdrec.registry import Registry

LOGGERS = Registry("logger", "kdrec.tracking.backends")


def register_logger(name: str, config: type):
    """``@register_logger("csv", config=CsvConfig)`` on a class ``(config, RunInfo) -> RunLogger``."""
    return LOGGERS.register(name, config=config)


@dataclass
class RunInfo:
    stage: str  # e.g. "distill", "pretrain-teacher", "evaluate"
    out: Path  # the job's run directory
    cfg: DictConfig  # the job's composed config
    source: Path | None = None  # run= of evaluate / export / benchmark-flops
    sweep_dir: Path | None = None  # the -m sweep the job belongs to

    @property
    def name(self) -> str:
        c = self.cfg
        parts = [self.stage, c.dataset.name if "dataset" in c else ""]
        if self.stage == "pretrain-teacher":
            parts.append(c.teacher.name)
        elif self.stage == "distill":
            parts.append(f"{c.teacher.name}->{c.student.name} ({c.distiller.name})")
        if self.source is not None:
            parts.append(f"of {self.source.name}")
        return " ".join(p for p in parts if p)


class RunLogger:
    """One backend's record of one job. ``log_epoch`` is the training loop's ``EpochLogger``
    hook; ``log_result`` gets the job's final figures (flat name -> number); ``close`` ends the
    record with the job's status (``FINISHED``, ``FAILED`` or ``KILLED``)."""

    def log_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def log_result(self, metrics: dict[str, float]) -> None:
        pass

    def close(self, status: str) -> None:
        pass


def flat_numbers(d: Any, prefix: str = "", sep: str = "_") -> dict[str, float]:
    """Numeric leaves of nested dicts: ``{"test": {"auc": .9}}`` -> ``{"test_auc": .9}`` (lists,
    strings and booleans are left out: they are in the result files, logged whole)."""
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flat_numbers(v, f"{prefix}{sep}{k}" if prefix else str(k), sep))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[prefix] = float(d)
    return out


def flat_config(cfg: DictConfig) -> dict[str, str | int | float | bool]:
    """The resolved config as ``section.key -> value``: scalars keep their type, lists and
    nulls are written as text."""
    out: dict[str, str | int | float | bool] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, (str, int, float, bool)):
            out[prefix] = node
        else:
            out[prefix] = "null" if node is None else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def result_files(out: Path) -> list[tuple[Path, str]]:
    """(file, folder in the tracker) for the run directory's results: JSON (metrics, flops,
    evaluation, export), tables, plots, the stage log, the Hydra config snapshot and an exported
    program (``student.pt2`` / ``.ts``); never training checkpoints."""
    keep = {".json", ".csv", ".md", ".png", ".svg", ".yaml", ".log", ".txt", ".pt2", ".ts"}
    files = [(p, "") for p in sorted(out.iterdir()) if p.is_file() and p.suffix in keep
             and not p.name.startswith(".")] if out.is_dir() else []
    hydra = out / ".hydra"
    if hydra.is_dir():
        files += [(p, "hydra") for p in sorted(hydra.glob("*.yaml"))]
    return files
