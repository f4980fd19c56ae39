"""`device=ddp`: data-parallel distillation through torchrun.

The Hydra job (one process) resolves the config once, pretrains the teacher if it is not cached,
writes the resolved config into its run directory and starts ``torchrun`` with ``device.nproc``
workers. Each worker reads that resolved config (no per-rank output directories), joins the process
group and runs the same distill body; only rank 0 writes artifacts, into the Hydra run directory.

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

from kdrec.errors import KdrecError

log = logging.getLogger("kdrec")
CONFIG_NAME = "ddp_config.yaml"


def launch(cfg: DictConfig, out: Path) -> dict:
    from kdrec.stages.common import build_task, get_teacher, load_data, pick_device, save_config
    from kdrec.distill.base import get_distiller_class
    from kdrec.config import train_config

    if get_distiller_class(cfg.distiller.name).needs_teacher:  # once, before the workers start
        data = load_data(cfg)
        task = build_task(cfg, data, pick_device(cfg), train_config(cfg, cfg.teacher).batch_size)
        get_teacher(cfg, data, task)
    save_config(out / CONFIG_NAME, cfg)
    if int(cfg.device.nproc) == 0:  # print the command for a multi-node / scheduler launch
        cmd = (f"python -m torch.distributed.run --nnodes=<N> --nproc_per_node=<GPUs per node> "
               f"--rdzv-backend=c10d --rdzv-endpoint=<host:port> -m kdrec.stages.ddp {out}")
        print(f"resolved config written to {out / CONFIG_NAME}; start the workers on every node with:\n  {cmd}")
        return {"launch_command": cmd, "run_dir": str(out)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={int(cfg.device.nproc)}", "-m", "kdrec.stages.ddp", str(out)]
    log.info("launching %d workers: %s", cfg.device.nproc, " ".join(cmd))
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        raise KdrecError(f"distributed workers failed (exit {proc.returncode}); see {out}")
    return json.loads((out / "metrics.json").read_text())


def worker_main(out: Path) -> None:
    cfg = OmegaConf.load(out / CONFIG_NAME)
    base = cfg.device.base
    if base == "cuda":
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
    from kdrec.stages.distill import run_body

    try:
        run_body(cfg, out)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    worker_main(Path(sys.argv[1]))
