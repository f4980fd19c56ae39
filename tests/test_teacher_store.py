"""The teacher store (``paths.teacher_store``): a committed checkpoint with the right signature is
copied into the cache instead of being trained again; an incomplete store entry is ignored."""

from __future__ import annotations

import shutil

import pytest
import torch

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
    entry = store / first.dir.parent.name / first.dir.name
    entry.mkdir(parents=True)
    for name in (*teachers.STORE_FILES, ".complete"):
        shutil.copyfile(first.dir / name, entry / name)

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
