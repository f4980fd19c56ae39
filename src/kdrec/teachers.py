"""The teacher cache: a teacher is trained once per signature (dataset config and content,
teacher config, its training settings, ``teacher_seed``) and stored under
``<paths.teachers>/<dataset>/<teacher>-<signature>/``; ``distill`` finds it there, never through
a hand-passed path. Concurrent runs with the same signature train it once: the others wait on
the entry's lock and load what it wrote (:mod:`kdrec.cache`).

A missing entry is first looked up in ``paths.teacher_store`` (default ``results/teachers``, same
layout, read only): the committed checkpoints of teachers that take an hour or more to train (the
Gowalla ones), so that a table resumed on a new machine does not train them again. The store's
files are copied into the cache, never trained into; a checkpoint enters it as a copy of a
complete cache entry (``checkpoint.pt``, ``metrics.json``, ``config.yaml``, ``.complete``), made by
:func:`store_teacher` (``kdrec table`` does it for tables with ``store_teachers: true``)."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from kdrec.artifacts import atomic_torch_save, atomic_write_json, atomic_write_text, signature, torch_load
from kdrec.bench.flops import param_counts
from kdrec.cache import cached_dir, is_complete
from kdrec.config import train_config
from kdrec.errors import KdrecError
from kdrec.models.registry import build_model
from kdrec.runtime import seed_everything
from kdrec.train.loop import EpochLogger, fit
from kdrec.train.phase import Phase, unique_params

log = logging.getLogger("kdrec")


def teacher_signature(cfg: DictConfig, data) -> str:
    return signature(cfg.dataset, getattr(data, "signature", ""), cfg.teacher,
                     train_config(cfg, cfg.teacher).identity(), cfg.teacher_seed)


def teacher_dir(cfg: DictConfig, data) -> Path:
    return (Path(cfg.paths.teachers) / cfg.dataset.name
            / f"{cfg.teacher.name}-{teacher_signature(cfg, data)}")


def train_plain(model, task, cfg: DictConfig, model_cfg: DictConfig, ckpt_dir: Path, seed: int,
                resume: bool, console=None, loggers: tuple[EpochLogger, ...] = ()):
    """Train a model alone on the task loss (teachers, and the `none` distiller's baseline)."""
    model.to(task.device)

    def loss(batch):
        return task.task_loss(model, batch)

    phase = Phase("train", loss, unique_params(model.parameters()), [model])
    return fit(phase, task, train_config(cfg, model_cfg), ckpt_dir=ckpt_dir, seed=seed,
               save_modules={"model": model}, resume=resume, console=console, loggers=loggers)


STORE_FILES = ("checkpoint.pt", "metrics.json", "config.yaml")


def stored_teacher(cfg: DictConfig, tdir: Path) -> Path | None:
    """The complete store entry with ``tdir``'s dataset and signature, if there is one."""
    store = cfg.paths.get("teacher_store")
    if not store:
        return None
    entry = Path(store) / tdir.parent.name / tdir.name
    return entry if is_complete(entry) and all((entry / f).is_file() for f in STORE_FILES) else None


def store_teacher(tdir: Path | str, store: Path | str) -> Path:
    """Copy the complete cache entry ``tdir`` into ``store`` (its checkpoint, metrics and config;
    not its ``cache/``), atomically; an entry already there is kept."""
    tdir = Path(tdir)
    if not is_complete(tdir):
        raise KdrecError(f"teacher {tdir} is not a complete cache entry: nothing to store")
    return cached_dir(Path(store) / tdir.parent.name / tdir.name, lambda tmp: _copy_entry(tdir, tmp),
                      what=f"teacher store entry {tdir.name}")


def _copy_entry(src: Path, dst: Path) -> None:
    for name in STORE_FILES:
        shutil.copyfile(src / name, dst / name)


@dataclass
class Teacher:
    model: torch.nn.Module
    dir: Path
    metrics: dict
    trained_now: bool


def _load(cfg: DictConfig, task, tdir: Path) -> tuple[torch.nn.Module, dict]:
    model = build_model(cfg.teacher, task.feature_map, where="teacher").to(task.device)
    model.load_state_dict(torch_load(tdir / "checkpoint.pt")["state_dict"])
    model.eval()
    return model, json.loads((tdir / "metrics.json").read_text())


def get_teacher(cfg: DictConfig, data, task, train_if_missing: bool = True, console=None,
                loggers: tuple[EpochLogger, ...] = ()) -> Teacher:
    """The teacher for this config: loaded from its signature directory, filled from the teacher
    store or else pretrained there first (interrupted pretraining resumes from
    ``<paths.work>/teacher-<signature>``)."""
    tdir = teacher_dir(cfg, data)
    trained = False
    if not is_complete(tdir):
        if not train_if_missing and stored_teacher(cfg, tdir) is None:
            raise KdrecError(f"no pretrained teacher for this config at {tdir} (nor in the teacher store "
                             f"{cfg.paths.get('teacher_store')}); run `kdrec pretrain-teacher` with the same "
                             "dataset/teacher/trainer overrides")

        def build(tmp: Path) -> None:
            nonlocal trained
            stored = stored_teacher(cfg, tdir)
            if stored is not None:
                log.info("teacher %s: copying the stored checkpoint %s", cfg.teacher.name, stored)
                _copy_entry(stored, tmp)
                return
            log.info("teacher %s: no cached checkpoint for signature %s, pretraining it first into %s",
                     cfg.teacher.name, tdir.name, tdir)
            work = Path(cfg.paths.work) / f"teacher-{tdir.name}"
            seed_everything(int(cfg.teacher_seed))  # before the model is built: its init is seeded
            model = build_model(cfg.teacher, task.feature_map, where="teacher")
            res = train_plain(model, task, cfg, cfg.teacher, work, int(cfg.teacher_seed), resume=True,
                              console=console, loggers=loggers)
            metrics = {"valid": task.evaluate(model, "valid"), "test": task.evaluate(model, "test"),
                       "params": param_counts(model)["params"], "train_seconds": res.seconds,
                       "best_epoch": res.best_epoch, "epochs_run": res.epochs_run}
            atomic_torch_save(tmp / "checkpoint.pt", {"state_dict": model.state_dict(),
                                                      "name": cfg.teacher.name, "signature": tdir.name})
            atomic_write_json(tmp / "metrics.json", metrics)
            atomic_write_text(tmp / "config.yaml", OmegaConf.to_yaml(OmegaConf.create({
                "dataset": cfg.dataset, "teacher": cfg.teacher,
                "trainer": train_config(cfg, cfg.teacher).__dict__, "teacher_seed": cfg.teacher_seed}),
                resolve=True))
            shutil.rmtree(work, ignore_errors=True)
            trained = True

        cached_dir(tdir, build, what=f"teacher {cfg.teacher.name} ({tdir.name})")
    else:
        log.info("teacher %s: reusing cached checkpoint %s", cfg.teacher.name, tdir / "checkpoint.pt")
    # everyone, the process that trained it included, uses the stored weights: identical runs
    # record identical teachers whoever trained them
    model, metrics = _load(cfg, task, tdir)
    return Teacher(model, tdir, metrics, trained)
