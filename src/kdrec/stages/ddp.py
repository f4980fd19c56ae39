"""`device=ddp`: data-parallel distillation through torchrun.

The Hydra job (one process) checks the config, pretrains the teacher if it is not cached, claims
the run's work directory, writes the resolved config into its run directory and starts
``torchrun`` with ``device.nproc`` workers. Each worker reads that resolved config, joins the
process group and runs the same pipeline (:mod:`kdrec.pipeline`); only rank 0 writes artifacts.
Rank 0 also writes each epoch's figures to ``ddp_epochs.jsonl``; once the workers are done, the
launcher hands them to the run's loggers (``logger=``), so a DDP run logs the same per-epoch rows
as a single-process one (the launcher owns the MLflow/TensorBoard runs, not the workers).

Equivalent manual launch (e.g. on a multi-GPU node)::

    kdrec distill device=ddp device.nproc=4 device.base=cuda device.backend=nccl ...
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from kdrec import workdir
from kdrec.distill.base import get_distiller_class
from kdrec.errors import KdrecError
from kdrec.pipeline import distill, distill_work_root
from kdrec.runtime import prepare, save_config
from kdrec.teachers import get_teacher

log = logging.getLogger("kdrec")
CONFIG_NAME = "ddp_config.yaml"
WORK_NAME = "ddp_work_dir.txt"
EPOCHS_NAME = "ddp_epochs.jsonl"


class EpochFile:
    """An epoch logger that appends one JSON line per (phase, epoch) to a file."""

    def __init__(self, path: Path):
        self.path = path

    def log_epoch(self, phase: str, epoch: int, metrics: dict[str, float]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"phase": phase, "epoch": epoch, "metrics": metrics}) + "\n")


def replay(path: Path, loggers) -> int:
    """Hand the epochs rank 0 wrote to ``loggers``; returns how many."""
    if not path.is_file():
        return 0
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in records:
        for lg in loggers:
            lg.log_epoch(r["phase"], r["epoch"], r["metrics"])
    return len(records)


def launch(cfg: DictConfig, out: Path, loggers=(), teacher_loggers=()) -> dict:
    rt = prepare(cfg)
    if get_distiller_class(cfg.distiller.name).needs_teacher:  # once, before the workers start
        get_teacher(cfg, rt.data, rt.task, loggers=teacher_loggers)
    save_config(out / CONFIG_NAME, cfg)
    if int(cfg.device.nproc) == 0:  # print the command for a multi-node / scheduler launch
        cmd = (f"python -m torch.distributed.run --nnodes=<N> --nproc_per_node=<GPUs per node> "
               f"--rdzv-backend=c10d --rdzv-endpoint=<host:port> -m kdrec.stages.ddp {out}")
        print(f"resolved config written to {out / CONFIG_NAME}; start the workers on every node with:\n  {cmd}")
        return {"launch_command": cmd, "run_dir": str(out)}
    work = workdir.claim(distill_work_root(cfg), bool(cfg.resume))
    (out / WORK_NAME).write_text(str(work.path))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={int(cfg.device.nproc)}", "-m", "kdrec.stages.ddp", str(out)]
    log.info("launching %d workers: %s", cfg.device.nproc, " ".join(cmd))
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    work.release(remove=proc.returncode == 0)
    replay(out / EPOCHS_NAME, loggers)  # a failed run's epochs too: they happened
    if proc.returncode != 0:
        raise KdrecError(f"distributed workers failed (exit {proc.returncode}); see {out}")
    return json.loads((out / "metrics.json").read_text())


def worker_main(out: Path) -> None:
    cfg = OmegaConf.load(out / CONFIG_NAME)
    if cfg.device.base == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend=cfg.device.backend)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    if dist.get_rank() == 0:
        fh = logging.FileHandler(out / "ddp_rank0.log")
        fh.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        logging.getLogger().addHandler(fh)
    else:  # one rank speaks
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("kdrec").setLevel(logging.WARNING)
    # the launcher claimed the work dir (multi-node launches without it use a per-run folder)
    wfile = out / WORK_NAME
    work = Path(wfile.read_text()) if wfile.is_file() else out / "work"
    try:
        loggers = (EpochFile(out / EPOCHS_NAME),) if dist.get_rank() == 0 else ()
        distill(prepare(cfg), out, work=work, loggers=loggers)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    worker_main(Path(sys.argv[1]))
