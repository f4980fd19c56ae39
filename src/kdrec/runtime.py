"""Run-time setup for a composed config: device, seeds, data, task, run directory.

Every stage calls :func:`prepare` first: it checks the whole config (nothing runs on a bad value),
picks the device once, seeds every generator before anything is built, and loads the data.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from kdrec.artifacts import atomic_write_text
from kdrec.config import check_config, train_config
from kdrec.data.registry import DataPaths, get_dataset_entry, load_dataset
from kdrec.errors import ConfigError
from kdrec.tasks.registry import get_task_class


def run_dir(cfg: DictConfig) -> Path:
    """The Hydra job's output directory; outside a Hydra job (a stage called in-process with a
    composed config) a fresh directory under ``paths.root/runs/in_process/``, never the cwd."""
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        base = Path(cfg.paths.root) / "runs" / "in_process"
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=base, prefix="run-"))


def pick_device(cfg: DictConfig) -> torch.device:
    kind = cfg.device.type
    if cfg.device.get("threads"):
        torch.set_num_threads(int(cfg.device.threads))
    if kind == "ddp":  # each torchrun worker computes on the base device (its own GPU for cuda)
        kind = cfg.device.base
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but torch sees no CUDA device; use device=cpu or device=auto")
    if cfg.device.get("deterministic") and kind == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device(kind)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)  # CPU and every CUDA device


def data_paths(cfg: DictConfig) -> DataPaths:
    return DataPaths(Path(cfg.paths.data_root), Path(cfg.paths.cache) / "data")


def load_data(cfg: DictConfig):
    return load_dataset(cfg.dataset, data_paths(cfg))


def build_task(cfg: DictConfig, data, device: torch.device, batch_size: int):
    task = get_task_class(get_dataset_entry(cfg.dataset.name).meta["task"])(
        data, device, batch_size, cfg.trainer.eval_batch_size)
    if getattr(task, "retrieval", None) is not None:  # retrieval models' neighbours: cached once
        task.retrieval.cache_dir = Path(cfg.paths.cache) / "retrieval"
    return task


def save_config(path: Path, cfg: DictConfig) -> None:
    atomic_write_text(path, OmegaConf.to_yaml(cfg, resolve=True))


@dataclass
class Runtime:
    cfg: DictConfig
    device: torch.device
    data: Any
    task: Any


def prepare(cfg: DictConfig, model_role: str = "student") -> Runtime:
    """Check the config, pick the device, seed, load the data and build the task (batch size of
    the ``model_role`` model's trainer settings)."""
    check_config(cfg)
    device = pick_device(cfg)
    seed_everything(int(cfg.seed))
    data = load_data(cfg)
    task = build_task(cfg, data, device, train_config(cfg, cfg[model_role]).batch_size)
    return Runtime(cfg, device, data, task)
