"""Every registered name has a yaml and every yaml names a registered class: models via
conf/teacher and conf/student, distillers via conf/distiller, datasets via conf/dataset, tasks via
the datasets that declare them, tables via conf/table (each row composes into a valid config)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kdrec.config import config_dir
from kdrec.data.registry import DATASETS
from kdrec.distill.base import DISTILLERS
from kdrec.models.registry import MODELS
from kdrec.tasks.registry import TASKS

CONF = Path(config_dir())
# registered on purpose without a yaml of their own (why)
NO_YAML = {"model": {"rok_student": "built by the ROK distillers around the configured backbone"}}


def yaml_names(compose_cfg, *groups: str) -> dict[str, list[str]]:
    """name -> the yaml files that name it (composed: a yaml may inherit its name, e.g. rok_*)."""
    out: dict[str, list[str]] = {}
    for g in groups:
        for p in sorted((CONF / g).glob("*.yaml")):
            name = compose_cfg(f"{g}={p.stem}")[g].get("name")
            assert name, f"{p} has no `name:` naming a registered class"
            out.setdefault(name, []).append(f"{g}/{p.name}")
    return out


@pytest.mark.parametrize("kind, registry, groups", [
    ("model", MODELS, ("teacher", "student")),
    ("distiller", DISTILLERS, ("distiller",)),
    ("dataset", DATASETS, ("dataset",)),
])
def test_registered_names_and_yamls_match(compose_cfg, kind, registry, groups):
    named = yaml_names(compose_cfg, *groups)
    registered = set(registry.names())
    unregistered = {n: files for n, files in named.items() if n not in registered}
    assert not unregistered, f"yaml(s) naming no registered {kind}: {unregistered}"
    exempt = NO_YAML.get(kind, {})
    without = sorted(registered - set(named) - set(exempt))
    assert not without, f"registered {kind}(s) without a yaml under conf/{'|'.join(groups)}: {without}"
    assert not set(exempt) - registered, f"stale exemptions: {set(exempt) - registered}"


def test_every_task_is_declared_by_a_dataset():
    declared = {DATASETS.entry(n).meta["task"] for n in DATASETS.names()}
    assert declared == set(TASKS.names())


def test_every_table_yaml_composes(compose_cfg):
    """Each row of each table, with its overrides, composes into a config whose names are
    registered and whose values pass the checks (the jobs a `kdrec table` would run)."""
    from kdrec.config import check_config
    from kdrec.table.spec import load_table, table_names

    names = table_names()
    assert names
    for name in names:
        spec = load_table(name)
        for row in spec.rows:
            cfg = compose_cfg(*row.overrides)
            check_config(cfg)
            assert cfg.student.name in MODELS and cfg.teacher.name in MODELS
            assert cfg.distiller.name in DISTILLERS and cfg.dataset.name in DATASETS


def test_make_targets_name_existing_tables():
    from kdrec.table.spec import table_names

    make = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    used = set(re.findall(r"kdrec\)? table (\w+)", make.replace("$(KDREC)", "kdrec")))
    assert used and used <= set(table_names())
