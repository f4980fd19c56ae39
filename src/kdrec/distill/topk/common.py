"""Shared parts of the top-K distillers.

Every top-K distiller trains the student on ``BPR + reg + weight * KD / B`` where ``KD`` is the
method's loss *summed* over the batch's entities, as in the reference implementations (which add a
summed KD loss to a summed BPR loss), and ``B`` is the number of BPR triples: dividing both sums
by ``B`` keeps the papers' weights meaningful with a mean BPR loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from kdrec.distill.base import DistillContext, Distiller, Phase, unique_params


def plackett_luce_relaxed(s_ranked: torch.Tensor, log_rest: torch.Tensor) -> torch.Tensor:
    """Per-row ``-log P``: the ranked items in their order, all of them above the rest.

    ``P = prod_k exp(s_k) / (sum_{j>=k} exp(s_j) + R)`` with ``log R = log_rest`` ([B] or [B, 1]).
    """
    tail = torch.logcumsumexp(s_ranked.flip(1), 1).flip(1)  # log sum_{j>=k} exp(s_j)
    below = torch.logaddexp(tail, log_rest.reshape(-1, 1))
    return -(s_ranked - below).sum(1)


def relaxed_ranking_loss(s_interesting: torch.Tensor, s_uninteresting: torch.Tensor) -> torch.Tensor:
    """RRD (Kang et al., CIKM'20): interesting items in the teacher's order, every one of them
    above every uninteresting item; order among the uninteresting ones is ignored. Returns [B]."""
    return plackett_luce_relaxed(s_interesting, torch.logsumexp(s_uninteresting, 1))


def rank_discount_probs(n: int, temperature: float, device) -> torch.Tensor:
    """Sampling weights ``exp(-r / T)`` for ranks r = 1..n (unnormalised)."""
    r = torch.arange(1, n + 1, dtype=torch.float32, device=device)
    return torch.exp(-r / temperature)


def sorted_pair_keys(rows: torch.Tensor, n_cols: int) -> torch.Tensor:
    """Sorted keys ``row * n_cols + col`` of a [R, n] matrix of column ids (for membership)."""
    r = torch.arange(rows.shape[0], device=rows.device)[:, None].expand_as(rows)
    return torch.sort((r * n_cols + rows).reshape(-1)).values


def member(keys_sorted: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_cols: int) -> torch.Tensor:
    q = rows * n_cols + cols
    pos = torch.searchsorted(keys_sorted, q).clamp_max(keys_sorted.numel() - 1)
    return keys_sorted[pos] == q


def epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + salt)


class Experts(nn.Module):
    """``M`` two-layer MLP experts ``d_in -> hidden -> d_out`` evaluated at once (batched weights)."""

    def __init__(self, num: int, d_in: int, hidden: int, d_out: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(num, d_in, hidden))
        self.b1 = nn.Parameter(torch.empty(num, hidden))
        self.w2 = nn.Parameter(torch.empty(num, hidden, d_out))
        self.b2 = nn.Parameter(torch.empty(num, d_out))
        for w, b, fan_in in ((self.w1, self.b1, d_in), (self.w2, self.b2, hidden)):
            bound = 1 / math.sqrt(fan_in)  # nn.Linear's default init
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, d_in] -> [B, M, d_out]."""
        h = torch.relu(torch.einsum("bd,mdh->bmh", x, self.w1) + self.b1)
        return torch.einsum("bmh,mho->bmo", h, self.w2) + self.b2

    def selected(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Expert ``idx[b]`` applied to row ``b`` only: x [B, d_in], idx [B] -> [B, d_out].
        Rows are grouped by expert (one sort) and each expert runs once on its contiguous block:
        a loop over the M experts, not over rows, and one host sync for the block sizes."""
        order = torch.argsort(idx)
        sizes = torch.bincount(idx, minlength=self.w1.shape[0]).tolist()
        xs = x[order]
        parts = [torch.relu(blk @ self.w1[m] + self.b1[m]) @ self.w2[m] + self.b2[m]
                 for m, blk in enumerate(torch.split(xs, sizes)) if blk.shape[0]]
        out = torch.empty(x.shape[0], self.w2.shape[2], dtype=x.dtype, device=x.device)
        return out.index_copy(0, order, torch.cat(parts))


def gumbel_softmax_select(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """DE's selection: ``softmax((log(p + 1e-10) + g) / T)`` with Gumbel noise ``g``."""
    u = torch.rand_like(probs).clamp(1e-10, 1 - 1e-10)
    g = -torch.log(-torch.log(u))
    return torch.softmax((torch.log(probs + 1e-10) + g) / temperature, dim=-1)


def annealed_temperature(epoch: int, start: float, end: float, epochs: int) -> float:
    """Geometric annealing ``start -> end`` over ``epochs`` epochs, then held at ``end``."""
    if epochs <= 0:
        return end
    return max(start * (end / start) ** (epoch / epochs), end)


class DistillExperts(nn.Module):
    """DE (Kang et al., CIKM'20) for one side: a selection network on the teacher representation
    picks (Gumbel-softmax) one of ``M`` experts mapping the student representation to the
    teacher's space; loss ``sum ||t - sum_m a_m E_m(s)||^2``."""

    def __init__(self, num: int, d_s: int, d_t: int, hard_below: float = 0.0):
        super().__init__()
        hidden = (d_s + d_t) // 2 if d_s != d_t else max(d_s // 2, 1)
        self.experts = Experts(num, d_s, hidden, d_t)
        self.select = nn.Linear(d_t, num)
        self.hard_below = hard_below

    def assign(self, t: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.select(t), -1)

    def loss(self, s: torch.Tensor, t: torch.Tensor, temperature: float,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        """``sum_b weight_b ||t_b - sum_m a_bm E_m(s_b)||^2``. Below ``hard_below`` temperature the
        Gumbel-softmax weights are one-hot to float precision but for negligible terms
        (``exp(-gap / T)``), so only each row's selected expert is evaluated (times its weight,
        which keeps the selection network's gradient): M times fewer FLOPs."""
        probs = self.assign(t)
        a = gumbel_softmax_select(probs, temperature) if probs.shape[1] > 1 else probs
        if probs.shape[1] > 1 and temperature < self.hard_below:
            idx = a.argmax(-1)
            out = self.experts.selected(s, idx) * a.gather(1, idx[:, None])
        else:
            out = (self.experts(s) * a[:, :, None]).sum(1)
        err = (t - out).pow(2).sum(-1)
        return (err * weight).sum() if weight is not None else err.sum()


class TopKDistiller(Distiller):
    """Base: one ``distill`` phase, ``BPR + reg + weight * kd_loss / B``. Subclasses set
    ``Config`` (with ``weight``), build caches in ``setup`` and implement ``kd_loss``."""

    @dataclass
    class Config:
        weight: float = 1e-3

    def setup(self, ctx: DistillContext) -> None:
        self.ctx = ctx
        self.T_user, self.T_item = ctx.task.embeddings(ctx.teacher) if ctx.teacher is not None else (None, None)
        self._aux = self.build_aux(ctx)

    def build_aux(self, ctx: DistillContext) -> nn.ModuleDict:
        return nn.ModuleDict()

    def aux_modules(self) -> nn.ModuleDict:
        return self._aux

    def on_epoch_start(self, epoch: int) -> None:
        """Per-epoch resampling / annealing (deterministic in ``epoch`` so resume is exact)."""

    def kd_loss(self, U: torch.Tensor, I: torch.Tensor, batch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def weighted_kd(self, U: torch.Tensor, I: torch.Tensor, batch) -> torch.Tensor:
        """The method's term(s) times their weights (combined methods override this)."""
        return self.cfg.weight * self.kd_loss(U, I, batch)

    def phases(self, ctx: DistillContext) -> list[Phase]:
        s, task = ctx.student, ctx.task

        def loss(batch):
            U, I = s.embed()
            return task.loss_from(s, U, I, batch) + self.weighted_kd(U, I, batch) / len(batch)

        return [Phase("distill", loss, unique_params(s.parameters(), self._aux.parameters()),
                      [s, self._aux], on_epoch_start=self.on_epoch_start)]


def teacher_topn(ctx: DistillContext, n: int) -> torch.Tensor:
    """The teacher's top-``n`` unobserved items per user, cached beside the teacher."""
    return ctx.task.teacher_cache(f"topn_users_items_{n}", ctx.teacher_dir,
                                  lambda: ctx.task.topn(ctx.teacher, n))


def teacher_topn_users(ctx: DistillContext, n: int) -> torch.Tensor:
    """The teacher's top-``n`` users per item (item side), train pairs excluded, cached."""
    return ctx.task.teacher_cache(f"topn_items_users_{n}", ctx.teacher_dir,
                                  lambda: ctx.task.topn_users(ctx.teacher, n))


def sample_outside(n_rows: int, n_range: int, per_row: int, generator: torch.Generator, device,
                   bad, rounds: int = 20) -> torch.Tensor:
    """[n_rows, per_row] uniform ids in ``0..n_range-1`` with ``bad(rows, ids)`` false, by
    vectorized rejection (``rounds`` redraws of the rejected entries; with realistic densities the
    leftover probability is negligible)."""
    rows = torch.arange(n_rows, device=device)[:, None].expand(n_rows, per_row)

    def draw():
        return torch.randint(n_range, (n_rows, per_row), generator=generator).to(device)

    ids = draw()
    for _ in range(rounds):
        ids = torch.where(bad(rows, ids), draw(), ids)
    return ids


def sample_ranked(top: torch.Tensor, k: int, temperature: float, sample: bool,
                  generator: torch.Generator) -> torch.Tensor:
    """K entries per row of a ranked list ``top`` [R, N]: rank-discounted sampling without
    replacement (``exp(-r/T)``), kept in the list's order; or the first K when ``sample`` is off."""
    if not sample:
        return top[:, :k]
    p = rank_discount_probs(top.shape[1], temperature, "cpu").expand(top.shape[0], -1)
    idx = torch.multinomial(p, k, replacement=False, generator=generator).sort(1).values
    return top.gather(1, idx.to(top.device))
