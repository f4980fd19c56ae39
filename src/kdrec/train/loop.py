"""The one training loop. It runs a :class:`Phase` with Adam, early stopping on the task's
validation monitor, lr reduction on plateau, checkpointing every epoch (atomic) and exact resume
(model, optimizer, scheduler, RNG, early-stopping state). It knows nothing about any method."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kdrec.artifacts import atomic_torch_save, torch_load
from kdrec.train import distributed as ddp
from kdrec.distill.base import Phase
from kdrec.errors import TrainingError
from kdrec.train.config import PRECISIONS, TrainConfig

log = logging.getLogger("kdrec")


@dataclass
class FitResult:
    phase: str
    best_epoch: int
    epochs_run: int
    best_valid: dict
    seconds: float
    stopped_reason: str


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _param_groups(phase: Phase, cfg: TrainConfig) -> list[dict]:
    emb_ids = set()
    for m in phase.train_modules:
        for mod in m.modules():
            if hasattr(mod, "offsets") and isinstance(getattr(mod, "weight", None), nn.Parameter):
                emb_ids.add(id(mod.weight))
    emb = [p for p in phase.params if id(p) in emb_ids]
    dense = [p for p in phase.params if id(p) not in emb_ids]
    groups = []
    if emb:
        groups.append({"params": emb, "weight_decay": cfg.embedding_l2})
    if dense:
        groups.append({"params": dense, "weight_decay": cfg.weight_decay})
    return groups


def _freeze_all_but(phase: Phase) -> None:
    keep = {id(p) for p in phase.params}
    for m in phase.train_modules:
        for p in m.parameters():
            p.requires_grad_(id(p) in keep)
    for p in phase.params:
        p.requires_grad_(True)


def _better(a: float, b: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if b is None or math.isnan(b):
        return not math.isnan(a)
    return a > b + min_delta if mode == "max" else a < b - min_delta


def _state_of(modules: dict[str, nn.Module]) -> dict:
    return {k: m.state_dict() for k, m in modules.items()}


def _load_into(modules: dict[str, nn.Module], state: dict) -> None:
    for k, m in modules.items():
        m.load_state_dict(state[k])


def fit(phase: Phase, task, cfg: TrainConfig, *, ckpt_dir: Path, seed: int,
        save_modules: dict[str, nn.Module], resume: bool = False,
        console=None) -> FitResult:
    """Train ``phase`` until early stopping; at return ``save_modules`` hold the best weights."""
    cfg = cfg.with_overrides(phase.overrides)
    if not phase.params:
        raise TrainingError(f"phase {phase.name!r} has no trainable parameters")
    ckpt_dir = Path(ckpt_dir)
    last_path = ckpt_dir / f"{phase.name}_last.pt"
    best_path = ckpt_dir / f"{phase.name}_best.pt"
    opt = torch.optim.Adam(_param_groups(phase, cfg), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=task.monitor_mode, factor=cfg.lr_plateau_factor,
        patience=cfg.lr_plateau_patience, min_lr=cfg.min_lr,
        threshold=cfg.min_delta, threshold_mode="abs")  # the same notion of improvement as early stopping
    monitor, mode = task.monitor, task.monitor_mode
    _freeze_all_but(phase)

    start_epoch, best, best_epoch, bad_epochs, seconds = 0, None, -1, 0, 0.0
    best_valid: dict = {}
    if resume and last_path.is_file():
        st = torch_load(last_path)
        if st.get("finished"):
            _load_into(save_modules, torch_load(best_path)["modules"])
            log.info("phase %s: already finished in %s, reusing it", phase.name, ckpt_dir)
            return FitResult(**st["result"])
        _load_into(save_modules, st["modules"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        _set_rng_state(st["rng"])
        start_epoch, best, best_epoch = st["epoch"] + 1, st["best"], st["best_epoch"]
        bad_epochs, seconds, best_valid = st["bad_epochs"], st["seconds"], st["best_valid"]
        log.info("phase %s: resuming at epoch %d from %s", phase.name, start_epoch, last_path)

    rank, world = ddp.rank(), ddp.world_size()
    amp_dtype = PRECISIONS[cfg.precision]
    autocast = torch.autocast(torch.device(task.device).type, dtype=amp_dtype, enabled=amp_dtype is not None)
    n_rows = task.num_rows("train")
    n_batches = math.ceil(n_rows / cfg.batch_size)
    stopped = "max_epochs"
    epoch = start_epoch - 1
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  console=console, disable=not cfg.progress or ddp.rank() != 0, transient=True) as progress:
        for epoch in range(start_epoch, cfg.epochs):
            if phase.on_epoch_start is not None:
                phase.on_epoch_start(epoch)
            for m in phase.train_modules:
                m.train()
            gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
            bar = progress.add_task(f"{phase.name} epoch {epoch + 1}", total=n_batches, info="")
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=task.device)
            for i, batch in enumerate(task.train_batches(gen, cfg.batch_size)):
                if world > 1:
                    batch = ddp.shard_batch(batch, rank, world)
                with autocast:
                    loss = phase.loss(batch).float()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if world > 1:
                    ddp.allreduce_mean_grads(phase.params)
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(phase.params, cfg.max_grad_norm)
                opt.step()
                loss_sum += loss.detach()
                if cfg.progress:
                    rate = (i + 1) * cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
                    progress.update(bar, advance=1, info=f"{rate:,.0f} rows/s")
            train_loss = float(ddp.allreduce_mean(loss_sum)) / max(n_batches, 1)  # one sync per epoch
            epoch_s = time.perf_counter() - t0
            seconds += epoch_s
            progress.remove_task(bar)
            if not math.isfinite(train_loss):
                if best_path.is_file():
                    _load_into(save_modules, torch_load(best_path)["modules"])
                raise TrainingError(
                    f"phase {phase.name!r}: training loss became {train_loss} at epoch {epoch + 1}; "
                    f"stopped (best checkpoint kept at {best_path}). Lower trainer.lr or check the data.")
            valid = task.evaluate(save_modules["model"], "valid")
            score = valid[monitor]
            improved = _better(score, best, mode, cfg.min_delta)
            if improved:
                best, best_epoch, bad_epochs, best_valid = score, epoch, 0, valid
                if rank == 0:
                    atomic_torch_save(best_path, {"epoch": epoch, "valid": valid,
                                                  "modules": _state_of(save_modules)})
            else:
                bad_epochs += 1
            sched.step(score)
            lr_now = opt.param_groups[0]["lr"]
            log.info("%s epoch %d: loss %.5f | valid %s | lr %.2g | %.1fs, %.0f rows/s%s",
                     phase.name, epoch + 1, train_loss,
                     " ".join(f"{k} {v:.5f}" for k, v in valid.items()), lr_now, epoch_s,
                     n_rows / max(epoch_s, 1e-9), " *" if improved else "")
            if rank == 0:
                atomic_torch_save(last_path, {
                    "epoch": epoch, "modules": _state_of(save_modules), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "rng": _rng_state(), "best": best,
                    "best_epoch": best_epoch, "bad_epochs": bad_epochs, "seconds": seconds,
                    "best_valid": best_valid})
            ddp.barrier()
            if phase.on_epoch_end is not None:
                phase.on_epoch_end(epoch, valid)
            _after_epoch(phase.name, epoch)
            if bad_epochs >= cfg.patience:
                stopped = "early_stopping"
                break
    if not best_path.is_file():
        raise TrainingError(f"phase {phase.name!r}: no epoch finished (trainer.epochs={cfg.epochs})")
    _load_into(save_modules, torch_load(best_path)["modules"])
    result = FitResult(phase.name, best_epoch + 1, epoch + 1, best_valid, seconds, stopped)
    if rank == 0:
        st = torch_load(last_path)
        st.update(finished=True, result=result.__dict__)
        atomic_torch_save(last_path, st)
    ddp.barrier()
    log.info("phase %s: best valid %s %.5f at epoch %d (%s after %d epochs, %.1fs)", phase.name,
             monitor, best_valid.get(monitor, float("nan")), best_epoch + 1, stopped, epoch + 1, seconds)
    return result


def _after_epoch(phase_name: str, epoch: int) -> None:
    """Seam for tests that simulate an interruption between epochs."""
