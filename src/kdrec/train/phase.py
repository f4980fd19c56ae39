"""What the training loop runs: a :class:`Phase` (its loss, what it trains, its hooks).

A distiller declares one or more phases (KD-DAGFM: distill, then fine-tune); teachers and the
``none`` baseline are one plain phase. The loop (:mod:`kdrec.train.loop`) knows nothing else about
a method, so phases live here, below every method that builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn


@dataclass
class Phase:
    name: str
    loss: Callable[[Any], torch.Tensor]  # batch -> scalar loss
    params: list[nn.Parameter]  # what this phase's optimizer updates
    train_modules: list[nn.Module]  # put in train() mode during the phase (teacher stays eval)
    overrides: dict = field(default_factory=dict)  # TrainConfig fields for this phase only
    on_epoch_start: Callable[[int], None] | None = None
    on_epoch_end: Callable[[int, dict], None] | None = None  # (epoch, valid metrics or {}), e.g. snapshots


def unique_params(*param_iters) -> list[nn.Parameter]:
    """Unique parameters in a stable order. A phase's list is exactly what trains: the loop turns
    ``requires_grad`` on for these and off for every other parameter of the phase's modules."""
    seen, out = set(), []
    for p in (q for it in param_iters for q in it):
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out
