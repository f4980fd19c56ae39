"""Dataset registry: a dataset yaml's ``name`` picks a builder; the builder's ``Config`` dataclass
checks every other key. A builder returns a task-specific dataset object (``CTRDataset`` here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kdrec.errors import ConfigError
from kdrec.models.registry import build_dataclass, model_params

DATASETS: dict[str, "DatasetEntry"] = {}


@dataclass
class DatasetEntry:
    name: str
    task: str  # "ctr" | "topk"
    config: type
    build: Callable[[Any, "DataPaths"], Any]


@dataclass
class DataPaths:
    data_root: Path  # raw files (KDREC_DATA_DIR, default ../shared/data)
    cache_root: Path  # encoded parquet + feature maps


def register_dataset(name: str, task: str, config: type):
    def deco(fn):
        DATASETS[name] = DatasetEntry(name, task, config, fn)
        return fn

    return deco


def get_dataset_entry(name: str) -> DatasetEntry:
    import kdrec.data.all  # noqa: F401

    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; registered: {sorted(DATASETS)}")
    return DATASETS[name]


def load_dataset(cfg, paths: DataPaths):
    entry = get_dataset_entry(cfg["name"])
    params = build_dataclass(entry.config, model_params(cfg), f"dataset ({cfg['name']})")
    return entry.build(params, paths)
