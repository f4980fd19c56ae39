"""Data-parallel training across processes (torchrun), kept out of models and distillers.

Every rank holds the whole student and the frozen teacher; each global batch (same seeded
permutation on every rank) is split row-wise across ranks, and the student's gradients are averaged
with one all-reduce per step, which is what DDP computes. Evaluation runs on identical weights on
every rank, so early-stopping decisions agree; only rank 0 writes artifacts."""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def in_worker() -> bool:
    """True inside a process started by torchrun (it sets these variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def barrier() -> None:
    if active():
        dist.barrier()


def shard_batch(batch, r: int, world: int):
    """Rows r, r+world, ... of every tensor field whose first dimension is the batch size."""
    fields = dataclasses.fields(batch)
    n = next(len(getattr(batch, f.name)) for f in fields if isinstance(getattr(batch, f.name), torch.Tensor))
    return dataclasses.replace(batch, **{
        f.name: getattr(batch, f.name)[r::world] for f in fields
        if isinstance(getattr(batch, f.name), torch.Tensor) and getattr(batch, f.name).shape[:1] == (n,)})


def allreduce_mean_grads(params: list[torch.nn.Parameter]) -> None:
    """Average gradients across ranks with one collective (parameters without a grad count as 0)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for p, g in zip(params, _unflatten_dense_tensors(flat, grads)):
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)


def allreduce_mean(t: torch.Tensor) -> torch.Tensor:
    if active():
        t = t.clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t
