"""What a task provides to the training loop, the distillers and the stages.

A task owns a dataset's device-resident splits and everything that depends on the kind of
problem: how batches are drawn, the task loss, the evaluation metrics (with the one early stopping
monitors), cost profiling and the per-teacher caches distillers read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Task(Protocol):
    kind: str  # registry name: "ctr" | "topk"
    monitor: str  # validation metric early stopping watches, e.g. "auc", "ndcg@20"
    monitor_mode: str  # "max" | "min"
    # a validation loss that grows without bound when training diverges (None: no such metric)
    loss_metric: str | None
    device: torch.device
    data: Any

    @property
    def feature_map(self) -> Any: ...

    def num_rows(self, split: str = "train") -> int: ...

    def train_batches(self, generator: torch.Generator, batch_size: int | None = None,
                      negatives: int = 1) -> Iterator[Any]: ...

    def task_loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]: ...

    def profile(self, model: nn.Module, latency: bool = True) -> dict[str, float]: ...

    def teacher_cache(self, name: str, teacher_dir: Path | None, compute: Callable[[], torch.Tensor]) -> torch.Tensor: ...
