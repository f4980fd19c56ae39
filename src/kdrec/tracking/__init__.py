"""Experiment tracking: the ``logger=`` config group.

A stage opens one tracking :class:`~kdrec.tracking.session.Session` per job (``session`` for
stages that train, ``record`` for those that only score or measure): it builds the configured
backend (``csv``, ``tensorboard``, ``mlflow``, ``none``; :data:`LOGGERS`), hands its per-epoch
hook to the training loop, logs the final figures and the run directory's result files, and
closes it with the job's status. ``objective`` is the float a stage's Hydra main returns, so
``hydra/sweeper=optuna`` can tune any stage that trains or scores.
"""

from kdrec.tracking.base import LOGGERS, RunInfo, RunLogger
from kdrec.tracking.objective import check_direction, objective
from kdrec.tracking.session import Session, record, session

__all__ = ["LOGGERS", "RunInfo", "RunLogger", "Session", "check_direction", "objective", "record", "session"]
