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


def _numeric_fields(cls):
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield f, hints[f.name]


# values outside the conventional range of each kind of field (schema.CONVENTIONS)
NONSENSE = {"dropout": 1.0, "cross_layers": 0, "dnn_hidden": [16, 0], "num_heads": 0, "attention_dim": 0,
            "depth": 0, "weight": -0.5, "temperature": 0.0, "T_end": 0.0, "pretrain_lr": 0.0, "k": 0,
            "anneal_epochs": 0, "noise": -1.0, "positive_rate": 1.0, "valid_fraction": 0.0, "num_rows": 0}


def test_every_section_refuses_out_of_range_values_by_naming_convention(compose_cfg):
    """Each (class, field) of the models, distillers and datasets whose name has a conventional
    range: a nonsense value is refused with the key and the allowed range, a default passes."""
    from kdrec.schema import conventional_range

    sections = [(get_model_class(compose_cfg(f"teacher={n}").teacher.name).Config, f"teacher/{n}")
                for n in entries("teacher")]
    sections += [(get_model_class(compose_cfg(f"student={n}").student.name).Config, f"student/{n}")
                 for n in entries("student")]
    sections += [(get_distiller_class(compose_cfg(f"distiller={n}").distiller.name).Config, f"distiller/{n}")
                 for n in entries("distiller")]
    sections += [(get_dataset_entry(compose_cfg(f"dataset={n}").dataset.name).meta["config"], f"dataset/{n}")
                 for n in entries("dataset")]
    from kdrec.retrieval.store import RetrievalConfig

    sections.append((RetrievalConfig, "retrieval"))
    checked = set()
    for cls, where in sections:
        for f, _hint in _numeric_fields(cls):
            if f.name in NONSENSE and not f.metadata and conventional_range(f.name):
                with pytest.raises(ConfigError, match=rf"{f.name}.*(out of range|allowed)"):
                    build_dataclass(cls, {f.name: NONSENSE[f.name]}, where)
                checked.add(f.name)
        build_dataclass(cls, {}, where)  # the defaults are in range
    for name in entries("teacher"):  # nested sections built later than check_config: the shipped values pass
        t = compose_cfg(f"teacher={name}").teacher
        if "retrieval" in t:
            build_dataclass(RetrievalConfig, model_params(t.retrieval), f"teacher/{name} retrieval")
    assert {"dropout", "cross_layers", "dnn_hidden", "num_heads", "depth", "temperature", "k"} <= checked


def test_declared_range_wins_over_convention():
    from kdrec.schema import check_value, conventional_range, ge

    assert check_value("x", "num_rows", 0, int, ge(0)) == 0
    with pytest.raises(ConfigError, match="x.num_rows: 0 is out of range; allowed: >= 1"):
        check_value("x", "num_rows", 0, int, conventional_range("num_rows"))


def test_retired_keys_load_at_their_kept_value_and_refuse_the_removed_one():
    """Options removed after measurement (``RETIRED`` on a config class): old run directories store
    them at the value kdrec kept and must still load; the removed value gets one clear error."""
    from kdrec.distill.base import distiller_config
    from kdrec.errors import ConfigError

    cases = {"rd": ("users", "all", "unique"), "cd": ("sampling", "tournament", "resample"),
             "htd": ("positive_only", True, False), "hetcomp": ("pos_rest", "half", "list")}
    for name, (key, kept, removed) in cases.items():
        cfg = distiller_config({"name": name, key: kept})
        assert not hasattr(cfg, key)
        with pytest.raises(ConfigError, match=f"{key}=.* was removed"):
            distiller_config({"name": name, key: removed})
