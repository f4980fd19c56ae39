import pytest
import torch

from kdrec.artifacts import atomic_torch_save, atomic_write_text, file_digest, signature, torch_load
from kdrec.errors import KdrecError


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "a" / "m.json"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]  # no temp files left


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "ckpt.pt"
    atomic_torch_save(p, {"w": torch.ones(3)})

    class Boom(RuntimeError):
        pass

    def exploding_fsync(fd):
        raise Boom("disk full")

    monkeypatch.setattr("os.fsync", exploding_fsync)
    with pytest.raises(Boom):
        atomic_torch_save(p, {"w": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(torch_load(p)["w"], torch.ones(3))
    assert [f.name for f in tmp_path.iterdir()] == ["ckpt.pt"]


def test_torch_load_errors_name_the_file(tmp_path):
    with pytest.raises(KdrecError, match="checkpoint not found"):
        torch_load(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(KdrecError, match="bad.pt"):
        torch_load(bad)


def test_signature_is_order_independent_and_sensitive():
    assert signature({"a": 1, "b": 2}) == signature({"b": 2, "a": 1})
    assert signature({"a": 1}) != signature({"a": 2})


def test_file_digest_changes_with_content(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("1,2\n")
    d1 = file_digest([f])
    f.write_text("1,3\n")
    assert file_digest([f]) != d1
