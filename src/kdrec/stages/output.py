"""What stages share on the terminal: the guarded entry point (one clear error line, exit 2) and
the metrics table."""

from __future__ import annotations

import functools
import logging
import sys

from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from kdrec.errors import KdrecError

log = logging.getLogger("kdrec")
console = Console(stderr=True)


def guarded(fn):
    """Turn user-fixable errors into one clear line and a non-zero exit, without a traceback."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig):
        try:
            return fn(cfg)
        except KdrecError as exc:
            msg = str(exc)
            stage = _stage_name()
            if stage and not msg.startswith(f"{stage}:"):  # every message names the stage that printed it
                msg = f"{stage}: {msg}"
            log.error("%s", msg)
            console.print(f"[bold red]kdrec error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
            raise SystemExit(2) from None

    return wrapper


def _stage_name() -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().job.name.replace("_", "-")
    except ValueError:  # called in-process, outside a Hydra job
        return ""


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
