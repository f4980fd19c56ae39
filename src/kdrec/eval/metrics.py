"""Exact, vectorized metrics. Registered by name so configs and reports can refer to them."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}


def register_metric(name: str):
    def deco(fn):
        METRICS[name] = fn
        return fn

    return deco


@register_metric("auc")
def auc(y: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """ROC AUC by the Mann-Whitney rank statistic; tied scores get their average rank (exact)."""
    y = y.double().flatten()
    score = score.double().flatten()
    n = y.numel()
    n_pos = y.sum()
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return torch.tensor(float("nan"), dtype=torch.float64, device=y.device)
    order = torch.argsort(score)
    s_sorted = score[order]
    _, inverse, counts = torch.unique_consecutive(s_sorted, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg_rank = ends - (counts.double() - 1) / 2  # 1-based average rank of each tie group
    rank_sum_pos = (avg_rank[inverse] * y[order]).sum()
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@register_metric("logloss")
def logloss(y: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy computed from logits in float64 (no probability clipping needed)."""
    return F.binary_cross_entropy_with_logits(logit.double().flatten(), y.double().flatten())


def ctr_metrics(y: torch.Tensor, logit: torch.Tensor) -> dict[str, float]:
    out = torch.stack([auc(y, logit), logloss(y, logit)]).cpu()  # one device sync
    return {"auc": float(out[0]), "logloss": float(out[1])}
