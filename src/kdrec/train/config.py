from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from kdrec.errors import ConfigError
from kdrec.models.registry import build_dataclass

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # autocast dtype (None: autocast off)


@dataclass
class TrainConfig:
    """Optimisation settings (conf/trainer/*.yaml). A model yaml's ``train:`` block or a distiller
    phase may override any field for that model or phase alone."""

    epochs: int = 100
    batch_size: int = 4096
    eval_batch_size: int = 65536
    lr: float = 1e-3
    weight_decay: float = 0.0  # on dense (non-embedding) parameters
    embedding_l2: float = 0.0  # on embedding tables
    patience: int = 2  # epochs without validation improvement before stopping
    min_delta: float = 1e-6  # an improvement smaller than this does not count (as in FuxiCTR)
    lr_plateau_factor: float = 0.1  # lr multiplied by this after a non-improving epoch
    lr_plateau_patience: int = 0
    min_lr: float = 1e-6
    max_grad_norm: float = 0.0  # 0 disables clipping
    # "bf16": forward/backward under torch.autocast(bfloat16) (weights, optimizer and evaluation
    # stay fp32). 3x faster MLPs on CPUs with AVX512-BF16/AMX and on GPUs; check AUC against fp32.
    precision: str = "fp32"
    progress: bool = True

    @classmethod
    def from_cfg(cls, *layers) -> "TrainConfig":
        """Merge dict-like layers left to right (later wins), checking every key."""
        merged: dict = {}
        for layer in layers:
            if layer:
                merged.update(dict(layer))
        cfg = build_dataclass(cls, merged, "trainer")
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision: {self.precision!r} is not one of {sorted(PRECISIONS)}")

    def with_overrides(self, overrides: dict) -> "TrainConfig":
        if not overrides:
            return self
        names = {f.name for f in fields(self)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ConfigError(f"phase overrides: unknown trainer key(s) {bad}")
        out = replace(self, **overrides)
        out.check()
        return out
