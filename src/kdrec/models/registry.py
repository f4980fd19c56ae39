"""Name-based model registry. A config's ``name`` picks the class; every other key must be a field
of the class's ``Config`` dataclass with the right type and range, so a misspelled key or a bad
value fails before any work."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdrec.registry import Registry
from kdrec.schema import build_dataclass

MODELS = Registry("model", "kdrec.models")
register_model = MODELS.register

# keys a model yaml may carry that are not model hyperparameters
RESERVED_KEYS = {"name", "train"}


def model_params(cfg: DictConfig | dict) -> dict[str, Any]:
    d = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    return {k: v for k, v in d.items() if k not in RESERVED_KEYS}


def get_model_class(name: str) -> type:
    return MODELS.get(name)


def model_config(cfg: DictConfig | dict, where: str = "model"):
    """The checked ``Config`` dataclass of the model ``cfg`` names (no module is built)."""
    cls = get_model_class(cfg["name"])
    return build_dataclass(cls.Config, model_params(cfg), f"{where} ({cfg['name']})")


def build_model(cfg: DictConfig | dict, *context, where: str = "model"):
    """``build_model(cfg.teacher, feature_map)`` -> an ``nn.Module`` on CPU."""
    return get_model_class(cfg["name"])(*context, model_config(cfg, where))
