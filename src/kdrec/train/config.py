from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch

from kdrec.errors import ConfigError
from kdrec.schema import between, build_dataclass, ge, one_of

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # autocast dtype (None: autocast off)


_ADDED_LATER = {"negatives": 1}


@dataclass
class TrainConfig:
    """Optimisation settings (conf/trainer/*.yaml). A model yaml's ``train:`` block or a distiller
    phase may override any field for that model or phase alone. Types and ranges are checked
    before any work (:mod:`kdrec.schema`)."""

    epochs: int = field(default=100, metadata=ge(1))
    batch_size: int = field(default=4096, metadata=ge(1))
    # top-K: sampled negatives per positive, the BPR loss averaged over them (BARS' MF-BPR: 300);
    # CTR tasks take 1 only
    negatives: int = field(default=1, metadata=ge(1))
    eval_batch_size: int = field(default=65536, metadata=ge(1))
    lr: float = field(default=1e-3, metadata=between(0, 10, lo_open=True))
    weight_decay: float = field(default=0.0, metadata=ge(0))  # on dense (non-embedding) parameters
    embedding_l2: float = field(default=0.0, metadata=ge(0))  # on embedding tables
    # evaluations without validation improvement before stopping (with eval_every > 1, counted in
    # evaluations, not epochs)
    patience: int = field(default=2, metadata=ge(1))
    eval_every: int = field(default=1, metadata=ge(1))  # validate every N epochs (and after the last)
    # an improvement must exceed min_delta (abs) or min_delta x |best| (rel) to count, for early
    # stopping and for the lr-on-plateau schedule alike
    min_delta: float = field(default=1e-6, metadata=ge(0))
    min_delta_mode: str = field(default="abs", metadata=one_of("abs", "rel"))
    lr_plateau_factor: float = field(default=0.1, metadata=between(0, 1, lo_open=True))
    lr_plateau_patience: int = field(default=0, metadata=ge(0))
    min_lr: float = field(default=1e-6, metadata=ge(0))
    max_grad_norm: float = field(default=0.0, metadata=ge(0))  # 0 disables clipping
    # training stops with an error when the task's validation loss (CTR: logloss) exceeds this
    # multiple of its first evaluation (divergence; 0 disables the check)
    divergence_factor: float = field(default=50.0, metadata=ge(0))
    # "bf16": forward/backward under torch.autocast(bfloat16) (weights, optimizer and evaluation
    # stay fp32). 3x faster MLPs on CPUs with AVX512-BF16/AMX and on GPUs; check AUC against fp32.
    precision: str = field(default="fp32", metadata=one_of(*PRECISIONS))
    progress: bool = True  # a progress bar with ETA on a terminal (one log line per epoch always)

    def identity(self) -> dict:
        """The settings that decide what is learned (for signatures): without ``progress``, and
        without fields added after results were committed while they hold their old behaviour,
        so those results and cached teachers keep their identity."""
        d = self.__dict__ | {"progress": None}
        for k, old in _ADDED_LATER.items():
            if d[k] == old:
                d.pop(k)
        return d

    @classmethod
    def from_cfg(cls, *layers) -> "TrainConfig":
        """Merge dict-like layers left to right (later wins), checking every key."""
        merged: dict = {}
        for layer in layers:
            if layer:
                merged.update(dict(layer))
        return build_dataclass(cls, merged, "trainer")

    def with_overrides(self, overrides: dict) -> "TrainConfig":
        if not overrides:
            return self
        names = {f.name for f in fields(self)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ConfigError(f"phase overrides: unknown trainer key(s) {bad}")
        return build_dataclass(TrainConfig, {**self.__dict__, **overrides}, "trainer (phase overrides)")
