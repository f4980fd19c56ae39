"""A table's jobs: one per (row, seed), each a composed config with its identity (a signature of
the stage and the whole config but where and how fast it runs), its fixed run directory under
the outputs tree and its result file under ``results/<table>/``. Extra overrides are part of every
job, so a table on other data or settings never counts another table's results as its own."""

from __future__ import annotations

import fnmatch
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kdrec.artifacts import signature
from kdrec.errors import ConfigError
from kdrec.table.spec import Row, TableSpec

# overrides that say where or how fast a job runs: not part of its identity
MACHINE_PREFIXES = ("device", "paths", "trainer.progress", "resume")


@dataclass(frozen=True)
class Job:
    table: str
    row: Row
    seed: int
    overrides: tuple[str, ...]  # everything but the seed, in order: table, group, row, extra
    signature: str
    teacher_key: str | None  # jobs sharing a teacher (None: the job needs none)
    run_dir: Path
    result_path: Path
    work_dir: Path | None = None  # where a distill job's checkpoints in progress live (None: other stages)

    @property
    def name(self) -> str:
        return f"{self.row.id} seed {self.seed}"

    @property
    def stage(self) -> str:
        return self.row.stage

    @property
    def lock_path(self) -> Path:
        """Held (an OS file lock) by the process that runs the job."""
        return Path(str(self.run_dir) + ".lock")

    def identity_overrides(self) -> list[str]:
        return [o for o in self.overrides if not o.lstrip("+~").startswith(MACHINE_PREFIXES)] + [f"seed={self.seed}"]


@dataclass
class Plan:
    spec: TableSpec
    jobs: list[Job]
    seeds: list[int]
    extra: list[str]
    outputs: Path  # this table's folder under the outputs tree
    results: Path  # results/<table>/
    teacher_store: Path | None = None  # paths.teacher_store (the table's store_teachers copies there)


@contextmanager
def composer():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from kdrec.config import config_dir

    if GlobalHydra.instance().is_initialized():  # a caller (a test session) set up the config dir
        yield compose
        return
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        yield compose


def check_extra(extra: list[str]) -> None:
    for o in extra:
        key = o.lstrip("+~").split("=", 1)[0]
        if key.startswith("hydra") or key in ("seed", "teacher_seed", "run"):
            hint = "use --seeds" if key in ("seed", "teacher_seed") else "the table sets it for each job"
            raise ConfigError(f"table: override {o!r} is not allowed ({hint})")
        if "=" not in o and not o.startswith("~"):
            raise ConfigError(f"table: {o!r} is not an override (key=value)")


def job_signature(stage: str, cfg: DictConfig) -> str:
    from kdrec.pipeline import run_signature

    return signature(stage, run_signature(cfg))


def work_dir(stage: str, cfg: DictConfig) -> Path | None:
    """The folder whose subdirectories hold a distill job's checkpoints in progress (as
    :func:`kdrec.pipeline.distill` names it); None for the other stages."""
    from kdrec.pipeline import distill_work_root

    return distill_work_root(cfg) if stage == "distill" else None


def teacher_key(stage: str, cfg: DictConfig) -> str | None:
    """Jobs with the same key share one cached teacher (the config part of its signature)."""
    from kdrec.config import train_config
    from kdrec.distill.base import get_distiller_class

    if stage == "distill" and not get_distiller_class(cfg.distiller.name).needs_teacher:
        return None
    return signature(cfg.dataset, cfg.teacher, train_config(cfg, cfg.teacher).identity(),
                     cfg.teacher_seed)


def select_rows(spec: TableSpec, patterns: list[str] | None) -> list[Row]:
    if not patterns:
        return spec.rows
    rows = [r for r in spec.rows if any(fnmatch.fnmatchcase(r.id, p) or fnmatch.fnmatchcase(r.row, p)
                                        or (r.group and fnmatch.fnmatchcase(r.group, p)) for p in patterns)]
    if not rows:
        raise ConfigError(f"table {spec.name}: --rows {patterns} match no row; rows: {[r.id for r in spec.rows]}")
    return rows


def compose_row(compose, spec: TableSpec, row: Row, extra: list[str]) -> DictConfig:
    from kdrec.config import check_config

    overrides = [*row.overrides, *extra]
    try:
        cfg = compose("config", overrides=overrides)
    except Exception as exc:  # Hydra's composition errors: unknown option, bad override syntax
        msg = " ".join(str(exc).split("Config search path")[0].split()) or type(exc).__name__
        raise ConfigError(f"table {spec.name}, row {row.id}: overrides {overrides} do not compose: {msg}") from None
    try:
        check_config(cfg)
    except ConfigError as exc:
        raise ConfigError(f"table {spec.name}, row {row.id}: {exc}") from None
    return cfg


def plan(spec: TableSpec, extra: list[str], seeds: list[int] | None = None,
         rows: list[str] | None = None) -> Plan:
    check_extra(extra)
    seeds = list(seeds or spec.cfg.seeds)
    selected = select_rows(spec, rows)
    jobs, outputs, results, store = [], None, None, None
    with composer() as compose:
        for row in selected:
            cfg = compose_row(compose, spec, row, extra)
            if outputs is None:
                outputs = Path(cfg.paths.root) / "tables" / spec.name
                results = Path(cfg.paths.results) / spec.name
                store = Path(cfg.paths.teacher_store) if cfg.paths.get("teacher_store") else None
            for seed in seeds:
                OmegaConf.update(cfg, "seed", int(seed))
                sig = job_signature(row.stage, cfg)
                jobs.append(Job(spec.name, row, int(seed), (*row.overrides, *extra), sig,
                                teacher_key(row.stage, cfg), outputs / row.id / f"seed{seed}-{sig}",
                                results / row.id / f"seed{seed}-{sig}.json", work_dir(row.stage, cfg)))
    return Plan(spec, jobs, seeds, list(extra), outputs, results, store)
