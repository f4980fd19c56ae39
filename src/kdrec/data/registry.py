"""Dataset registry: a dataset yaml's ``name`` picks a builder; the builder's ``Config`` dataclass
checks every other key. A builder returns a task-specific dataset object (``CTRDataset`` here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdrec.models.registry import model_params
from kdrec.registry import Entry, Registry
from kdrec.schema import build_dataclass

DATASETS = Registry("dataset", "kdrec.data.sources")


@dataclass
class DataPaths:
    data_root: Path  # raw files (KDREC_DATA_DIR, default ../shared/data)
    cache_root: Path  # encoded parquet + feature maps


def register_dataset(name: str, task: str, config: type):
    """``@register_dataset("frappe_x1", task="ctr", config=TableConfig)`` on a builder
    ``(config, DataPaths) -> dataset``."""
    return DATASETS.register(name, task=task, config=config)


def get_dataset_entry(name: str) -> Entry:
    """``entry.obj`` is the builder, ``entry.meta`` holds ``task`` and ``config``."""
    return DATASETS.entry(name)


def dataset_config(cfg, where: str = "dataset"):
    entry = get_dataset_entry(cfg["name"])
    return build_dataclass(entry.meta["config"], model_params(cfg), f"{where} ({cfg['name']})")


def load_dataset(cfg, paths: DataPaths):
    return get_dataset_entry(cfg["name"]).obj(dataset_config(cfg), paths)
