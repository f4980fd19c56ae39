"""Name-based model registry (RecBole-style). A config's ``name`` picks the class; every other key
must be a field of the class's ``Config`` dataclass, so a misspelled key fails loudly."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from kdrec.errors import ConfigError

MODELS: dict[str, type] = {}

# keys a model yaml may carry that are not model hyperparameters
RESERVED_KEYS = {"name", "train"}


def register_model(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = cls
        cls.registry_name = name
        return cls

    return deco


def build_dataclass(cls: type, values: dict[str, Any], where: str):
    """Instantiate a config dataclass, naming the offending key on a typo."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    return cls(**values)


def model_params(cfg: DictConfig | dict) -> dict[str, Any]:
    d = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    return {k: v for k, v in d.items() if k not in RESERVED_KEYS}


def get_model_class(name: str) -> type:
    import kdrec.models.all  # noqa: F401  (registers every model)

    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    return MODELS[name]


def build_model(cfg: DictConfig | dict, *context, where: str = "model"):
    """``build_model(cfg.teacher, feature_map)`` -> an ``nn.Module`` on CPU."""
    cls = get_model_class(cfg["name"])
    params = build_dataclass(cls.Config, model_params(cfg), f"{where} ({cfg['name']})")
    return cls(*context, params)
