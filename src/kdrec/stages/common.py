"""What every stage needs: a guarded entry point, device and seeds, data, task, teacher cache."""

from __future__ import annotations

import functools
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from kdrec.artifacts import atomic_torch_save, atomic_write_json, atomic_write_text, signature, torch_load
from kdrec.config import train_config
from kdrec.data.registry import DataPaths, get_dataset_entry, load_dataset
from kdrec.distill.base import Phase, unique_params
from kdrec.errors import ConfigError, KdrecError
from kdrec.models.registry import build_model
from kdrec.train.loop import fit

log = logging.getLogger("kdrec")
console = Console(stderr=True)


def guarded(fn):
    """Turn user-fixable errors into one clear line and a non-zero exit, without a traceback."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig):
        try:
            return fn(cfg)
        except KdrecError as exc:
            log.error("%s", exc)
            console.print(f"[bold red]kdrec error:[/] {exc}")
            raise SystemExit(2) from None

    return wrapper


def run_dir(cfg: DictConfig) -> Path:
    """The Hydra job's output directory; outside a Hydra job (a stage called in-process with a
    composed config) a fresh directory under ``paths.root/runs/in_process/``, never the cwd."""
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        import tempfile

        base = Path(cfg.paths.root) / "runs" / "in_process"
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=base, prefix="run-"))


def pick_device(cfg: DictConfig) -> torch.device:
    kind = cfg.device.type
    if cfg.device.get("threads"):
        torch.set_num_threads(int(cfg.device.threads))
    if kind == "ddp":  # each torchrun worker computes on the base device (its own GPU for cuda)
        kind = cfg.device.base
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but torch sees no CUDA device; use device=cpu or device=auto")
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"device.type must be cpu, cuda or auto, not {kind!r}")
    return torch.device(kind)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def data_paths(cfg: DictConfig) -> DataPaths:
    return DataPaths(Path(cfg.paths.data_root), Path(cfg.paths.cache) / "data")


def load_data(cfg: DictConfig):
    return load_dataset(cfg.dataset, data_paths(cfg))


def build_task(cfg: DictConfig, data, device: torch.device, batch_size: int):
    kind = get_dataset_entry(cfg.dataset.name).task
    from kdrec.tasks.registry import get_task_class

    task = get_task_class(kind)(data, device, batch_size, cfg.trainer.eval_batch_size)
    if getattr(task, "retrieval", None) is not None:  # retrieval models' neighbours: cached once
        task.retrieval.cache_dir = Path(cfg.paths.cache) / "retrieval"
    return task


def build(model_cfg: DictConfig, task, where: str):
    return build_model(model_cfg, task.feature_map, where=where)


def save_config(path: Path, cfg: DictConfig) -> None:
    atomic_write_text(path, OmegaConf.to_yaml(cfg, resolve=True))


# ---------------------------------------------------------------- teacher cache
def teacher_signature(cfg: DictConfig, data) -> str:
    return signature(cfg.dataset, getattr(data, "signature", ""), cfg.teacher,
                     train_config(cfg, cfg.teacher).__dict__, cfg.teacher_seed)


def teacher_dir(cfg: DictConfig, data) -> Path:
    return (Path(cfg.paths.teachers) / cfg.dataset.name
            / f"{cfg.teacher.name}-{teacher_signature(cfg, data)}")


def train_plain(model, task, cfg: DictConfig, model_cfg: DictConfig, ckpt_dir: Path, seed: int,
                resume: bool):
    """Train a model alone on the task loss (teachers, and the `none` distiller's baseline)."""
    model.to(task.device)

    def loss(batch):
        return task.task_loss(model, batch)

    phase = Phase("train", loss, unique_params(model.parameters()), [model])
    return fit(phase, task, train_config(cfg, model_cfg), ckpt_dir=ckpt_dir, seed=seed,
               save_modules={"model": model}, resume=resume, console=console)


def get_teacher(cfg: DictConfig, data, task, train_if_missing: bool = True):
    """The teacher for this config: loaded from its signature directory, or pretrained there first."""
    tdir = teacher_dir(cfg, data)
    teacher = build(cfg.teacher, task, "teacher").to(task.device)
    ckpt = tdir / "checkpoint.pt"
    if ckpt.is_file():
        state = torch_load(ckpt)
        teacher.load_state_dict(state["state_dict"])
        log.info("teacher %s: reusing cached checkpoint %s", cfg.teacher.name, ckpt)
        metrics = json.loads((tdir / "metrics.json").read_text())
        teacher.eval()
        return teacher, tdir, metrics, False
    if not train_if_missing:
        raise KdrecError(f"no pretrained teacher for this config at {tdir}; run `kdrec pretrain-teacher` "
                         "with the same dataset/teacher/trainer overrides")
    log.info("teacher %s: no cached checkpoint for signature %s, pretraining it first into %s",
             cfg.teacher.name, tdir.name, tdir)
    atomic_write_text(tdir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create({
        "dataset": cfg.dataset, "teacher": cfg.teacher, "trainer": train_config(cfg, cfg.teacher).__dict__,
        "teacher_seed": cfg.teacher_seed}), resolve=True))
    seed_everything(cfg.teacher_seed)
    res = train_plain(teacher, task, cfg, cfg.teacher, tdir / "ckpt", cfg.teacher_seed, resume=True)
    metrics = {"valid": task.evaluate(teacher, "valid"), "test": task.evaluate(teacher, "test"),
               "params": count_params(teacher), "train_seconds": res.seconds,
               "best_epoch": res.best_epoch, "epochs_run": res.epochs_run}
    atomic_torch_save(ckpt, {"state_dict": teacher.state_dict(), "name": cfg.teacher.name,
                             "signature": tdir.name})
    atomic_write_json(tdir / "metrics.json", metrics)
    teacher.eval()
    return teacher, tdir, metrics, True


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def print_metrics_table(title: str, rows: dict[str, dict]) -> None:
    from rich.table import Table

    t = Table(title=title)
    cols = ["valid auc", "valid logloss", "test auc", "test logloss"]
    first = next(iter(rows.values()), {})
    if "valid" in first and "auc" not in first["valid"]:  # ranking: the @20 metrics (all are in metrics.json)
        keys = [k for k in first["valid"] if k.endswith("@20")] or list(first["valid"])[:3]
        cols = [f"{s} {k}" for s in ("valid", "test") for k in keys]
    t.add_column("model")
    for c in cols:
        t.add_column(c, justify="right")
    for name, m in rows.items():
        t.add_row(name, *[f"{m[c.split(' ')[0]][c.split(' ', 1)[1]]:.5f}" for c in cols])
    Console(width=None if sys.stdout.isatty() else 160).print(t)

