"""The teacher store (``paths.teacher_store``): a committed checkpoint with the right signature is
copied into the cache instead of being trained again; an incomplete store entry is ignored."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import kdrec.teachers as teachers
from kdrec.errors import KdrecError
from kdrec.runtime import build_task, load_data

TINY = ["experiment=smoke", "dataset.num_rows=3000", "+teacher.train.epochs=1", "device.threads=1"]


def _teacher(compose_cfg, root, store, **kw):
    cfg = compose_cfg(*TINY, f"paths.root={root}", f"paths.teacher_store={store}")
    data = load_data(cfg)
    task = build_task(cfg, data, torch.device("cpu"), 1024)
    return teachers.get_teacher(cfg, data, task, **kw)


def test_stored_teacher_is_copied_not_trained(tmp_path, compose_cfg, monkeypatch):
    store = tmp_path / "store"
    first = _teacher(compose_cfg, tmp_path / "a", store)
    assert first.trained_now
    entry = teachers.store_teacher(str(first.dir), str(store))  # as the README's one-liner calls it
    assert entry == store / first.dir.parent.name / first.dir.name
    assert sorted(p.name for p in entry.iterdir()) == sorted([*teachers.STORE_FILES, ".complete"])

    def no_training(*a, **k):
        raise AssertionError("a stored teacher was trained again")

    monkeypatch.setattr(teachers, "train_plain", no_training)
    second = _teacher(compose_cfg, tmp_path / "b", store, train_if_missing=False)
    assert not second.trained_now and second.dir.parent.parent == tmp_path / "b" / "teachers"
    assert second.metrics == first.metrics
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, second.model.state_dict()[k]), k

    (entry / ".complete").unlink()  # a half-copied entry is not a teacher
    with pytest.raises(KdrecError, match="no pretrained teacher"):
        _teacher(compose_cfg, tmp_path / "c", store, train_if_missing=False)


def test_table_stores_its_teachers_and_a_new_machine_copies_them(tmp_path, outputs, cli):
    from conftest import run_cli

    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump({
        "title": "store", "seeds": [1], "overrides": ["experiment=smoke", "dataset.num_rows=3000"],
        "store_teachers": True, "teacher": "teacher", "columns": ["test:auc"],
        "rows": [{"id": "teacher", "stage": "pretrain-teacher"}, {"id": "kd", "overrides": ["distiller=kd"]}]}))
    first = cli("table", str(spec), "--latency", "skip")
    store = tmp_path / "results" / "teachers"  # paths.teacher_store follows KDREC_RESULTS
    [entry] = [p for p in store.glob("*/*") if not p.name.startswith(".")]
    assert f"teacher stored: {entry}" in first.stdout
    [cached] = [p for p in (outputs / "teachers").glob("*/*") if not p.name.startswith(".")]
    assert entry.name == cached.name and (entry / "checkpoint.pt").read_bytes() == (cached / "checkpoint.pt").read_bytes()

    # a new machine: this repository's results/ (store included), an empty outputs tree
    [kd] = (tmp_path / "results" / "t" / "kd").glob("*.json")
    kept = json.loads(kd.read_text())
    kd.unlink()
    fresh = tmp_path / "outputs-new"
    run_cli("table", str(spec), "--rows", "kd", "--latency", "skip", outputs=fresh)
    [run] = (fresh / "tables" / "t" / "kd").glob("seed1-*/")
    assert "copying the stored checkpoint" in (run / "distill.log").read_text()
    assert not (fresh / "work").exists() or not list((fresh / "work").glob("teacher-*"))
    again = json.loads(kd.read_text())
    assert again["teacher"] == kept["teacher"] and again["metrics"]["test"] == kept["metrics"]["test"]
