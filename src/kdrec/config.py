"""Locating the packaged configs, and checking the composed config before any work: every
section a user sets (top level, device, trainer, teacher, student, distiller, dataset) is turned
into its typed, range-checked dataclass (:mod:`kdrec.schema`); a bad key or value is one
``kdrec error:`` line naming it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kdrec.schema import build_dataclass, ge, one_of
from kdrec.train.config import TrainConfig


def config_dir() -> str:
    """``conf/`` ships inside the wheel as ``kdrec/conf``; in a source checkout it is top-level."""
    here = Path(__file__).resolve().parent
    for cand in (here / "conf", here.parents[1] / "conf"):
        if (cand / "config.yaml").is_file():
            return str(cand)
    raise FileNotFoundError("kdrec's conf/ directory was not found beside the package")


def train_config(cfg: DictConfig, model_cfg: DictConfig | None = None) -> TrainConfig:
    """Trainer group, then the model yaml's optional ``train:`` block."""
    base = OmegaConf.to_container(cfg.trainer, resolve=True)
    over = {}
    if model_cfg is not None and "train" in model_cfg and model_cfg.train is not None:
        over = OmegaConf.to_container(model_cfg.train, resolve=True)
    return TrainConfig.from_cfg(base, over)


@dataclass
class DeviceConfig:
    type: str = field(default="cpu", metadata=one_of("cpu", "cuda", "auto", "ddp"))
    threads: int = field(default=0, metadata=ge(0))  # torch intra-op threads; 0 keeps torch's default
    nproc: int = field(default=2, metadata=ge(0))  # ddp: workers (0: print the launch command)
    base: str = field(default="cpu", metadata=one_of("cpu", "cuda"))  # ddp: each worker's device
    backend: str = field(default="gloo", metadata=one_of("gloo", "nccl"))
    deterministic: bool = False  # CUDA: deterministic kernels (slower); CPU runs are already


@dataclass
class RunConfig:
    """The top-level keys of conf/config.yaml."""

    seed: int = field(default=42, metadata=ge(0))
    teacher_seed: int = field(default=42, metadata=ge(0))
    resume: bool = False
    run: str | None = None


def check_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` on the first bad key or value of any section; builds nothing."""
    from kdrec.data.registry import dataset_config
    from kdrec.distill.base import distiller_config
    from kdrec.models.registry import model_config

    top = {k: cfg[k] for k in ("seed", "teacher_seed", "resume", "run") if k in cfg}
    build_dataclass(RunConfig, top, "config")
    build_dataclass(DeviceConfig, OmegaConf.to_container(cfg.device, resolve=True), "device")
    dataset_config(cfg.dataset)
    for role in ("teacher", "student"):
        if role in cfg and cfg[role] is not None:
            model_config(cfg[role], role)
            train_config(cfg, cfg[role])
    if "distiller" in cfg:
        distiller_config(cfg.distiller)
