"""Locating the packaged configs and turning the composed config into typed pieces."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

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
