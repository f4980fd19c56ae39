"""Every entry of every config group composes, and its keys are valid for the class it names."""

from pathlib import Path

import pytest

from kdrec.config import config_dir, train_config
from kdrec.data.registry import get_dataset_entry
from kdrec.distill.base import get_distiller_class
from kdrec.errors import ConfigError
from kdrec.models.registry import build_dataclass, get_model_class, model_params

CONF = Path(config_dir())


def entries(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["teacher", "student"])
def test_every_model_entry_names_a_registered_model_with_valid_keys(compose_cfg, group):
    for name in entries(group):
        cfg = compose_cfg(f"{group}={name}")
        mcfg = cfg[group]
        cls = get_model_class(mcfg.name)
        build_dataclass(cls.Config, model_params(mcfg), f"{group}/{name}")
        train_config(cfg, mcfg)  # a model's train: block must hold valid trainer keys


def test_every_distiller_entry(compose_cfg):
    for name in entries("distiller"):
        d = compose_cfg(f"distiller={name}").distiller
        cls = get_distiller_class(d.name)
        build_dataclass(cls.Config, model_params(d), f"distiller/{name}")


def test_every_dataset_entry(compose_cfg):
    for name in entries("dataset"):
        d = compose_cfg(f"dataset={name}").dataset
        entry = get_dataset_entry(d.name)
        build_dataclass(entry.meta["config"], model_params(d), f"dataset/{name}")


def test_every_experiment_and_device_composes(compose_cfg):
    for name in entries("experiment"):
        cfg = compose_cfg(f"experiment={name}")
        assert cfg.student.name and cfg.dataset.name
    for name in entries("device"):
        assert compose_cfg(f"device={name}").device.type in ("cpu", "cuda", "auto", "ddp")


def test_misspelled_model_key_is_an_error_naming_it(compose_cfg):
    cfg = compose_cfg("+student.embed_dimm=3")
    cls = get_model_class(cfg.student.name)
    with pytest.raises(ConfigError, match="embed_dimm"):
        build_dataclass(cls.Config, model_params(cfg.student), "student")


def test_unknown_registry_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="registered"):
        get_model_class("nope")
    with pytest.raises(ConfigError, match="registered"):
        get_distiller_class("nope")


def test_model_train_block_overrides_trainer(compose_cfg):
    cfg = compose_cfg("+student.train.lr=0.05")
    assert train_config(cfg, cfg.student).lr == 0.05
    assert train_config(cfg, cfg.teacher).lr == cfg.trainer.lr
