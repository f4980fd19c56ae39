"""CTR task: batches sliced from split tensors by a seeded permutation, BCE loss, AUC/logloss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from kdrec.cache import cached_torch
from kdrec.data.spec import CTRDataset
from kdrec.errors import ConfigError, DataError
from kdrec.eval.metrics import ctr_metrics
from kdrec.tasks.registry import register_task


@dataclass
class CTRBatch:
    idx: torch.Tensor  # row ids within the split (index teacher caches with these)
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.y.shape[0]


def check_labels(data: CTRDataset) -> None:
    """Training and AUC need both classes in train and valid; say so before any work."""
    for split in ("train", "valid"):
        y = data.splits[split].y
        if len(y) == 0:
            raise DataError(f"dataset {data.feature_map.dataset}: the {split} split is empty")
        pos = int((y > 0.5).sum())
        if pos == 0 or pos == len(y):
            raise DataError(f"dataset {data.feature_map.dataset}: every label of the {split} split is "
                            f"{int(pos > 0)} ({len(y):,} rows); a CTR task needs positive and negative "
                            "rows in train and valid (check the label column)")


@register_task("ctr")
class CTRTask:
    kind = "ctr"
    monitor = "auc"
    monitor_mode = "max"
    loss_metric = "logloss"

    def __init__(self, data: CTRDataset, device: torch.device, batch_size: int,
                 eval_batch_size: int = 65536):
        self.data = data
        self.device = device
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        check_labels(data)
        # whole splits live on the device once; batches are views/gathers, never per-row objects
        self.splits = {k: v.to(device) for k, v in data.splits.items()}
        # neighbours for models with ``uses_retrieval`` (RIM), computed lazily once per retrieval
        # setting; the stage points ``retrieval.cache_dir`` at <paths.cache>/retrieval
        from kdrec.retrieval.store import RetrievalStore

        self.retrieval = RetrievalStore(data, self.splits, device, cache_dir=None)

    @property
    def feature_map(self):
        return self.data.feature_map

    def num_rows(self, split: str = "train") -> int:
        return len(self.splits[split])

    def train_batches(self, generator: torch.Generator, batch_size: int | None = None,
                      negatives: int = 1) -> Iterator[CTRBatch]:
        if negatives != 1:
            raise ConfigError(f"trainer.negatives: {negatives}, but a CTR task trains on its labelled "
                              "rows (negatives are for top-K tasks)")
        split = self.splits["train"]
        bs = batch_size or self.batch_size
        perm = torch.randperm(len(split), generator=generator).to(self.device)
        for start in range(0, len(split), bs):
            idx = perm[start:start + bs]
            yield CTRBatch(idx, split.x[idx], split.y[idx])

    def model_inputs(self, model: nn.Module, split: str, idx: torch.Tensor, x: torch.Tensor) -> tuple:
        """What ``model`` is called with for rows ``idx`` of ``split``: ``(x,)``, or for a model
        with ``uses_retrieval`` ``(x, nbr_x [B, K, F], nbr_y [B, K])`` gathered from the cache."""
        if getattr(model, "uses_retrieval", False):
            return self.retrieval.neighbours(model.retrieval_config, split, idx, x)
        return (x,)

    def task_loss(self, model: nn.Module, batch: CTRBatch) -> torch.Tensor:
        z = model(*self.model_inputs(model, "train", batch.idx, batch.x))
        return F.binary_cross_entropy_with_logits(z, batch.y)

    @torch.no_grad()
    def predict(self, model: nn.Module, split: str) -> torch.Tensor:
        was_training = model.training
        model.eval()
        x = self.splits[split].x
        rows = torch.arange(x.shape[0], device=x.device)
        bs = self.eval_batch_size
        out = torch.cat([model(*self.model_inputs(model, split, rows[i:i + bs], x[i:i + bs]))
                         for i in range(0, x.shape[0], bs)])
        model.train(was_training)
        return out.float()

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        return ctr_metrics(self.splits[split].y, self.predict(model, split))

    def teacher_cache(self, name: str, teacher_dir: Path | None, compute) -> torch.Tensor:
        """``compute()`` once per teacher and name, stored under ``<teacher_dir>/cache`` (locked,
        complete or absent: :mod:`kdrec.cache`)."""
        path = Path(teacher_dir) / "cache" / f"{name}.pt" if teacher_dir else None
        meta = {"data": getattr(self.data, "signature", ""),
                "rows": {k: len(v) for k, v in self.splits.items()}}
        return cached_torch(path, compute, meta, what=f"teacher cache {name}").to(self.device)

    def teacher_logits(self, teacher: nn.Module, split: str, teacher_dir: Path | None) -> torch.Tensor:
        """Teacher logits for every row of ``split``, computed once per teacher and cached beside it."""
        return self.teacher_cache(f"logits_{split}", teacher_dir, lambda: self.predict(teacher, split))

    def profile(self, model: nn.Module, latency: bool = True) -> dict[str, float]:
        """Per-sample FLOPs, parameters and (optionally) latency at batch 1 / 4096 on real test rows."""
        from kdrec.bench.flops import profile_model

        sample = self.splits["test"].x[:256]
        if getattr(model, "uses_retrieval", False):  # cost includes the live retrieval per query
            from kdrec.retrieval.store import profile_retrieval_model

            return profile_retrieval_model(self.retrieval, model, sample, latency=latency)
        return profile_model(model, sample, latency=latency)
