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
from kdrec.errors import ConfigError
from kdrec.tasks.topk import redraw_rejected


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is in a narrower float (bf16 under autocast); float64 stays."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def plackett_luce_relaxed(s_ranked: torch.Tensor, log_rest: torch.Tensor) -> torch.Tensor:
    """Per-row ``-log P``: the ranked items in their order, all of them above the rest.

    ``P = prod_k exp(s_k) / (sum_{j>=k} exp(s_j) + R)`` with ``log R = log_rest`` ([B] or [B, 1]).
    """
    # One shift per row and a plain reverse cumsum, in float64 so that a row's scores may span
    # ~700 before a term underflows: torch.logcumsumexp's CPU scan (a log and an exp per element,
    # forward and backward) was most of RRD's KD step on Gowalla, and 6.5x slower than this.
    s = s_ranked.double()
    rest = log_rest.reshape(-1, 1).double()
    shift = torch.maximum(s.amax(1, keepdim=True), rest).detach()
    tail = torch.exp(s - shift).flip(1).cumsum(1).flip(1)  # sum_{j>=k} exp(s_j - shift)
    below = shift + torch.log((tail + torch.exp(rest - shift)).clamp_min(torch.finfo(torch.float64).tiny))
    return -(s - below).sum(1).to(s_ranked.dtype)


def relaxed_ranking_loss(s_interesting: torch.Tensor, s_uninteresting: torch.Tensor) -> torch.Tensor:
    """RRD (Kang et al., CIKM'20): interesting items in the teacher's order, every one of them
    above every uninteresting item; order among the uninteresting ones is ignored. Returns [B]."""
    return plackett_luce_relaxed(s_interesting, torch.logsumexp(s_uninteresting, 1))


def gather_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` for ids of any shape, through ``index_select``: the same values and
    gradients (backward ``index_add`` sums in the same order as advanced indexing's
    ``index_put``), but on CPU a [1980, 40] gather of 6-wide rows took 1.0 ms instead of 2.7 ms
    (forward), so the per-user item lists of RRD-style losses are read this way."""
    return table.index_select(0, ids.reshape(-1)).view(*ids.shape, *table.shape[1:])


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


USER_MODES = ("all", "unique")


def kd_users(batch, mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The users a per-user KD term is summed over, as (distinct users, multiplicity or None):
    every BPR triple's user (``all``, repeats counted, as the reference code; computed once per
    distinct user and weighted by its count, the same sum) or each distinct user once (``unique``)."""
    if mode == "all":
        return torch.unique(batch.users, return_counts=True)
    return torch.unique(batch.users), None


def check_users_mode(name: str, mode: str) -> None:
    if mode not in USER_MODES:
        raise ConfigError(f"distiller {name}: users must be one of {USER_MODES}, not {mode!r}")


def epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + salt)


class Experts(nn.Module):
    """``M`` two-layer MLP experts ``d_in -> hidden -> d_out`` (batched weights).

    :meth:`mixture` evaluates ``sum_m a_bm E_m(x_b)`` as two matrix products: the first layer of
    all experts at once (``[B, d_in] @ [d_in, M*hidden]``) and the second on the weighted hidden
    units (``[B, M*hidden] @ [M*hidden, d_out]``), instead of ``M`` small products per layer.
    Pairs ``(b, m)`` outside ``keep`` are left out (their weight is negligible): the kept rows
    are grouped by expert and every expert runs on its own rows in one batched matrix product."""

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
        """x [B, d_in] -> every expert's output [B, M, d_out] (reference form, used by tests)."""
        h = torch.relu(torch.einsum("bd,mdh->bmh", x, self.w1) + self.b1)
        return torch.einsum("bmh,mho->bmo", h, self.w2) + self.b2

    def mixture(self, x: torch.Tensor, a: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``sum_m a[b, m] E_m(x[b])`` -> [B, d_out], over the pairs in ``keep`` (all if None)."""
        M, d_in, H = self.w1.shape
        if keep is None:
            h = torch.relu(x @ self.w1.permute(1, 0, 2).reshape(d_in, M * H) + self.b1.reshape(-1))
            z = (h.view(-1, M, H) * a[:, :, None]).reshape(-1, M * H)
            return z @ self.w2.reshape(M * H, -1) + a @ self.b2
        # kept pairs grouped by expert, each group padded to the largest: one batched matmul per
        # layer ([M, n_max, d_in] @ [M, d_in, H]) instead of a loop over the experts
        rows, m = keep.nonzero(as_tuple=True)
        order = torch.argsort(m, stable=True)
        rows, m = rows[order], m[order]
        counts = torch.bincount(m, minlength=M)
        slot = torch.arange(m.shape[0], device=x.device) - (torch.cumsum(counts, 0) - counts)[m]
        n_max = int(counts.max())  # one host sync per call
        xs = x.new_zeros(M, n_max, d_in).index_put((m, slot), x[rows])
        h = torch.relu(torch.baddbmm(self.b1[:, None, :], xs, self.w1))
        y = torch.baddbmm(self.b2[:, None, :], h, self.w2)[m, slot]  # padding rows dropped
        contrib = y * a[rows, m][:, None]
        return x.new_zeros(x.shape[0], y.shape[1], dtype=contrib.dtype).index_add(0, rows, contrib)


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
    teacher's space; loss ``sum ||t - sum_m a_m E_m(s)||^2``.

    Cost: the Gumbel-softmax weights ``a`` sharpen as the temperature anneals; experts whose
    weight is below ``drop_below`` are not evaluated for that row (their term is below that
    fraction of an expert's output, and their gradient as small). While some expert keeps half
    of the rows or more, all experts run as two matrix products (:meth:`Experts.mixture`); below, each expert runs on
    its own rows only (one batched product per layer). ``drop_below: 0`` evaluates every expert for every row, as the reference code."""

    def __init__(self, num: int, d_s: int, d_t: int, drop_below: float = 0.0):
        super().__init__()
        hidden = (d_s + d_t) // 2 if d_s != d_t else max(d_s // 2, 1)
        self.experts = Experts(num, d_s, hidden, d_t)
        self.select = nn.Linear(d_t, num)
        self.drop_below = drop_below

    def assign(self, t: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.select(t), -1)

    def loss(self, s: torch.Tensor, t: torch.Tensor, temperature: float,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        """``sum_b weight_b ||t_b - sum_m a_bm E_m(s_b)||^2``."""
        probs = self.assign(t)
        a = gumbel_softmax_select(probs, temperature) if probs.shape[1] > 1 else probs
        keep = None
        if self.drop_below > 0 and probs.shape[1] > 1:
            k = a >= self.drop_below
            k.scatter_(1, a.argmax(1, keepdim=True), True)  # every row keeps its selected expert
            if 2 * int(k.sum(0).max()) < k.shape[0]:  # padded expert groups: under half the work
                keep = k
        out = self.experts.mixture(s, a, keep)
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

    return redraw_rejected(rows, draw(), draw, bad, rounds)


def sample_ranked(top: torch.Tensor, k: int, temperature: float, sample: bool,
                  generator: torch.Generator) -> torch.Tensor:
    """K entries per row of a ranked list ``top`` [R, N]: rank-discounted sampling without
    replacement (``exp(-r/T)``), kept in the list's order; or the first K when ``sample`` is off."""
    if not sample:
        return top[:, :k]
    p = rank_discount_probs(top.shape[1], temperature, "cpu").expand(top.shape[0], -1)
    idx = torch.multinomial(p, k, replacement=False, generator=generator).sort(1).values
    return top.gather(1, idx.to(top.device))
