"""The value a stage's Hydra main returns: its monitored validation metric, so that
``hydra/sweeper=optuna`` (or any sweeper that reads return values) can tune any stage that trains
or scores. The monitor and its direction come from the dataset's task (CTR: valid AUC, higher is
better; top-K: valid NDCG@20, higher is better)."""

from __future__ import annotations

from kdrec.errors import ConfigError


def monitor(dataset: str) -> tuple[str, str]:
    """(metric, "max" | "min") early stopping watches for the task of ``dataset`` (a name)."""
    from kdrec.data.registry import get_dataset_entry
    from kdrec.tasks.registry import get_task_class

    task = get_task_class(get_dataset_entry(dataset).meta["task"])
    return task.monitor, task.monitor_mode


def _sweeper_direction():
    """The running sweeper's ``direction`` (Optuna's), or None outside such a sweep."""
    from hydra.core.hydra_config import HydraConfig

    try:
        sweeper = HydraConfig.get().sweeper
    except ValueError:
        return None
    if sweeper is None or "direction" not in sweeper:
        return None
    return sweeper.direction


def check_direction(dataset: str) -> None:
    """Under a sweeper with a ``direction``, it must be the task monitor's: a tuner that minimises
    AUC would report the worst trial as the best."""
    direction = _sweeper_direction()
    if direction is None:
        return
    name, mode = monitor(dataset)
    want = "maximize" if mode == "max" else "minimize"
    if not isinstance(direction, str) and hasattr(direction, "__len__"):
        raise ConfigError(f"hydra.sweeper.direction={list(direction)}: a kdrec stage returns one value "
                          f"(valid {name}); set hydra.sweeper.direction={want}")
    got = str(getattr(direction, "name", direction))
    if got != want:
        raise ConfigError(f"hydra.sweeper.direction={got}, but the monitored metric valid {name} is "
                          f"better when {'higher' if mode == 'max' else 'lower'}: set "
                          f"hydra.sweeper.direction={want}")


def objective(dataset: str, valid: dict | None) -> float | None:
    """The monitored metric of a ``valid`` metrics dict of a run on ``dataset`` (None for a stage
    that has none, e.g. a ``device=ddp device.nproc=0`` launch that only prints a command)."""
    if not valid:
        return None
    check_direction(dataset)
    name, _ = monitor(dataset)
    return float(valid[name])
