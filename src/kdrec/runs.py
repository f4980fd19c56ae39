"""Finished run directories as inputs: ``evaluate``, ``benchmark-flops`` and ``export`` rebuild a
run's data and models from its saved config and load its trained weights."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from kdrec.artifacts import torch_load
from kdrec.distill.base import get_distiller_class
from kdrec.errors import KdrecError
from kdrec.models.registry import build_model
from kdrec.teachers import get_teacher


def load_run_config(cfg: DictConfig, stage: str, needs_student: bool = False) -> tuple[Path, DictConfig]:
    """The finished run ``cfg.run`` and its saved config, ready to rebuild: this invocation's
    device, logger and outputs tree (where teachers and caches are looked up), and the run's own
    data root unless this command line sets ``paths.data_root``. Every error names ``stage``."""
    what = "a finished distill run" if needs_student else "a finished pretrain-teacher or distill run"
    if not cfg.run:
        raise KdrecError(f"{stage} needs run=<run directory> ({what})")
    rdir = Path(cfg.run)
    cfg_path = rdir / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise KdrecError(f"{stage}: {rdir} is not a kdrec run directory: {cfg_path} is missing")
    if needs_student and not (rdir / "student.pt").is_file():
        raise KdrecError(f"{stage}: {rdir} holds no student.pt: {stage} needs {what}")
    run_cfg = OmegaConf.load(cfg_path)
    paths = OmegaConf.to_container(cfg.paths, resolve=True)
    if not _set_on_command_line("paths.data_root"):
        paths["data_root"] = run_data_root(rdir, run_cfg)
    run_cfg.paths = paths
    run_cfg.device = cfg.device
    run_cfg.logger = cfg.get("logger")  # where this invocation's results are tracked
    return rdir, run_cfg


def run_data_root(rdir: Path, run_cfg: DictConfig) -> str:
    """The data root the run read, as it resolved then (environment included: the run's
    ``config_resolved.yaml``), made absolute against the run's working directory."""
    resolved = rdir / "config_resolved.yaml"
    if resolved.is_file():
        root = OmegaConf.load(resolved).paths.data_root
    else:  # an unfinished run: its saved config, resolved now
        root = OmegaConf.to_container(run_cfg.paths, resolve=True)["data_root"]
    root = Path(str(root)).expanduser()
    hydra_yaml = rdir / ".hydra" / "hydra.yaml"
    if not root.is_absolute() and hydra_yaml.is_file():
        cwd = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.runtime.cwd")
        if cwd:
            root = Path(cwd) / root
    return str(root)


def _set_on_command_line(key: str) -> bool:
    """Whether this Hydra job's command line sets ``key`` (or a parent of it: ``paths=...``)."""
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:  # not inside a Hydra job (a stage called in-process)
        return False
    parents = {".".join(key.split(".")[:i]) for i in range(1, key.count(".") + 2)}
    for o in overrides:
        name = o.split("=", 1)[0].lstrip("+~")
        if name in parents:
            return True
    return False


def load_models(run_cfg: DictConfig, rdir: Path, task, data, stage: str = "") -> dict:
    """The run's models with trained weights: the teacher from its signature cache and, for a
    distill run, the student from ``student.pt``. Errors name ``stage`` when given."""
    who = f"{stage}: " if stage else ""
    models = {}
    is_distill = "distiller" in run_cfg and (rdir / ".hydra" / "config.yaml").is_file() and \
        (rdir / "metrics.json").is_file() and "distiller" in (rdir / "metrics.json").read_text()
    if (rdir / "student.pt").is_file():
        state = torch_load(rdir / "student.pt")
        student = build_model(OmegaConf.create(state["student"]), task.feature_map, where="student").to(task.device)
        student.load_state_dict(state["state_dict"])
        student.eval()
        models[f"student {run_cfg.student.name}"] = student
        if not get_distiller_class(run_cfg.distiller.name).needs_teacher:
            return models
    elif is_distill or not (rdir / "metrics.json").is_file():
        raise KdrecError(f"{who}{rdir} holds no finished run (no student.pt / metrics.json): it was interrupted "
                         "or is still running; finish it (resume=true) first")
    try:
        teacher = get_teacher(run_cfg, data, task, train_if_missing=False)
    except KdrecError as exc:
        raise KdrecError(f"{who}{exc}") from None
    return {f"teacher {run_cfg.teacher.name}": teacher.model, **models}
