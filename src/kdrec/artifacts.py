"""Outputs tree, config signatures and atomic writes.

Layout under ``paths.root`` (default ``outputs/``)::

    runs/<stage>/<YYYY-MM-DD_HH-MM-SS>/        one Hydra run: .hydra/, metrics.json, *.pt, <stage>.log
    multirun/<stage>/<YYYY-MM-DD_HH-MM-SS>/N/  one job of a sweep
    teachers/<dataset>/<teacher>-<sig>/        a pretrained teacher, found again by its signature
    cache/data/<dataset>-<sig>/                encoded parquet + feature_map.json
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the pid in the name lets kdrec.cache remove temporaries of killed processes
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-", suffix="")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def atomic_torch_save(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def torch_load(path: Path, map_location="cpu") -> Any:
    from kdrec.errors import KdrecError

    path = Path(path)
    if not path.is_file():
        raise KdrecError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise KdrecError(f"cannot read checkpoint {path}: {exc}") from exc


def to_container(cfg: Any) -> Any:
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def signature(*parts: Any, length: int = 12) -> str:
    """Stable short hash of config parts (resolved to plain containers, keys sorted)."""
    blob = json.dumps([to_container(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_digest(paths: list[Path], chunk: int = 1 << 22) -> str:
    """Content hash of source files (so a changed file invalidates the encoded cache)."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()[:16]
