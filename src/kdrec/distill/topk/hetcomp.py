"""HetComp (Kang et al., WWW'23): distil an ensemble of heterogeneous teachers through their
training trajectories, easy to hard.

* **Teachers** (``teachers``: model yamls as dicts, e.g. MF-128 and LightGCN-64) are trained here
  on the task's BPR loss with an ``on_epoch_end`` hook that snapshots each teacher's top-``K``
  unobserved items every ``snapshot_every`` epochs. The trajectory keeps ``num_ckpt`` points:
  ``num_ckpt - 1`` snapshots evenly spread before the best epoch, then the best model. It is cached
  (``trajectory.pt``) under ``<teachers>/<dataset>/hetcomp/<signature>/``, the signature covering
  the data, the teacher configs, their training settings, K, the trajectory rule and the seed.
* **Ensemble target** at checkpoint ``v``: the teachers' top-K lists at ``v`` merged by reciprocal
  rank ``sum_t 1 / (rank_t + 1)`` (our simplification of the paper's consensus ranking).
* **Curriculum (DKC)**, per user: start at checkpoint 0; every ``p`` epochs (from epoch ``p``)
  compare the student's top-K with the next checkpoint's target, ``d = 1 - NDCG``; move on when
  ``d_last / d_next`` exceeds ``alpha * 0.995^(epoch // p)`` or drops below 1 (as the reference
  code). The per-user checkpoint index lives in an aux buffer, so checkpoints and resume keep it.
* **Losses** per unique batch user (full item scores): before the last checkpoint the *overall*
  ranking loss (each positive and each target item above all non-target unobserved items), times
  ``overall_factor`` (2, as the reference); at the last checkpoint the *listwise* loss
  (Plackett-Luce on the positives, and on the target's first K/2 and first K/10 items in order,
  each above the rest; the positives' rest excludes only the first K/2 target items, as the
  reference).
* **Positives**: the first ``num_pos`` train items of each user in data order, fixed for the run
  (``num_pos: 0``: the smallest train degree, the reference's ``pos_K``).
Two earlier kdrec variants (positives redrawn every epoch; the positives' rest excluding the whole
target list) were measured against these reference rules over 3 seeds on MovieLens-100K, were not
better (NDCG@20 -0.0048, p 0.32; -0.0016, p 0.13) and were removed (docs/topk.md, "Deviations").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from omegaconf import OmegaConf
from torch import nn

from kdrec.artifacts import signature
from kdrec.cache import cached_torch
from kdrec.distill.base import Phase, register_distiller, unique_params
from kdrec.distill.topk.common import TopKDistiller, at_least_float32, member, plackett_luce_relaxed
from kdrec.errors import ConfigError
from kdrec.models.registry import build_model
from kdrec.train.config import TrainConfig

log = logging.getLogger("kdrec")


def ensemble_topk(perms: list[torch.Tensor], num_items: int, k: int, chunk: int = 2048) -> torch.Tensor:
    """Reciprocal-rank merge of several [U, K] ranked lists into one [U, k] list."""
    n_users, kk = perms[0].shape
    w = 1.0 / torch.arange(1, kk + 1, dtype=torch.float32, device=perms[0].device)
    out = []
    for a in range(0, n_users, chunk):
        b = min(a + chunk, n_users)
        score = torch.zeros(b - a, num_items, device=perms[0].device)
        for p in perms:  # a handful of teachers
            score.scatter_add_(1, p[a:b], w.expand(b - a, kk))
        # ties (items with the same merged score) break by the lower item id, deterministically
        out.append(torch.topk(score - 1e-7 * torch.arange(num_items, device=score.device) / num_items,
                              k, dim=1).indices)
    return torch.cat(out)


def ndcg_overlap(student_top: torch.Tensor, target: torch.Tensor, num_items: int) -> torch.Tensor:
    """Per-row NDCG of ``student_top`` [U, K] against ``target`` [U, K] with the reference's
    graded gains ``2^{exp(-r/10)} - 1`` by target rank r."""
    U, K = target.shape
    gain = 2 ** torch.exp(-torch.arange(K, device=target.device, dtype=torch.float32) / 10) - 1
    disc = 1 / torch.log2(torch.arange(2, K + 2, device=target.device, dtype=torch.float32))
    # hit[r] = student's r-th item is anywhere in the target list
    rows = torch.arange(U, device=target.device)[:, None]
    key_t = torch.sort((rows * num_items + target).reshape(-1)).values
    q = rows * num_items + student_top
    pos = torch.searchsorted(key_t, q).clamp_max(key_t.numel() - 1)
    hit = (key_t[pos] == q).float()
    return (hit * gain * disc).sum(1) / (gain * disc).sum()


class CurriculumState(nn.Module):
    def __init__(self, num_users: int):
        super().__init__()
        self.register_buffer("idx", torch.zeros(num_users, dtype=torch.long))
        self.register_buffer("last_dist", torch.ones(num_users))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))


@register_distiller("hetcomp")
class HetComp(TopKDistiller):
    @dataclass
    class Config:
        weight: float = 1e-3
        teachers: list = field(default_factory=lambda: [
            {"name": "mf", "embed_dim": 200, "reg": 1e-2},
            {"name": "lightgcn", "embed_dim": 64, "num_layers": 2, "reg": 1e-3}])
        teacher_train: dict = field(default_factory=lambda: {"epochs": 300, "lr": 5e-3, "batch_size": 2048,
                                                             "patience": 10, "lr_plateau_patience": 1000})
        num_ckpt: int = 4
        snapshot_every: int = 2
        K: int = 50
        num_pos: int = 0  # 0: the smallest train degree (the reference's pos_K)
        overall_factor: float = 2.0  # the reference's factor on the overall loss
        p: int = 5  # DKC period in epochs
        alpha: float = 1.05
        RETIRED: ClassVar[dict] = {
            "resample_pos": (False, "redrawn positives were measured not better over 3 seeds, docs/topk.md Deviations"),
            "pos_rest": ("half", "the whole-list rest was measured not better over 3 seeds, docs/topk.md Deviations")}

    # ---------------------------------------------------------------- teachers + trajectories
    def _train_teacher(self, spec: dict, ckpt_dir, seed: int) -> torch.Tensor:
        from kdrec.train.loop import fit

        task = self.ctx.task
        spec = dict(spec)
        own_train = spec.pop("train", None) or {}  # this teacher's settings over teacher_train
        model = build_model(spec, task.feature_map, where="hetcomp teacher").to(task.device)
        snaps: dict[int, torch.Tensor] = {}
        every = self.cfg.snapshot_every

        def on_end(epoch: int, valid: dict) -> None:
            if (epoch + 1) % every == 0:
                snaps[epoch] = task.topn(model, self.cfg.K).cpu()

        def loss(batch):
            return task.task_loss(model, batch)

        phase = Phase("train", loss, unique_params(model.parameters()), [model], on_epoch_end=on_end)
        tc = TrainConfig.from_cfg({"progress": False}, self.cfg.teacher_train, own_train)
        torch.manual_seed(seed)
        res = fit(phase, task, tc, ckpt_dir=ckpt_dir, seed=seed, save_modules={"model": model})
        final = task.topn(model, self.cfg.K).cpu()  # best weights are loaded at return
        before = [snaps[e] for e in sorted(snaps) if e < res.best_epoch - 1]
        n = self.cfg.num_ckpt - 1
        if before:
            pick = torch.linspace(0, len(before) - 1, n).round().long().tolist() if n > 0 else []
            traj = [before[i] for i in pick]
        else:
            traj = [final] * n
        log.info("hetcomp teacher %s-%d: best valid ndcg@20 %.4f at epoch %d; %d snapshots before it",
                 spec["name"], model.embed_dim, res.best_valid.get("ndcg@20", float("nan")),
                 res.best_epoch, len(before))
        return torch.stack(traj + [final])  # [num_ckpt, U, K]

    def _trajectories(self) -> torch.Tensor:
        ctx, task, c = self.ctx, self.ctx.task, self.cfg
        if c.num_ckpt < 1 or not c.teachers:
            raise ConfigError("distiller hetcomp: needs num_ckpt >= 1 and at least one teacher")
        specs = [OmegaConf.to_container(t, resolve=True) if OmegaConf.is_config(t) else dict(t)
                 for t in c.teachers]
        sig = signature(task.data.signature, specs, c.teacher_train, c.num_ckpt, c.snapshot_every,
                        c.K, ctx.seed)
        root = (ctx.teacher_dir.parent / "hetcomp" / sig) if ctx.teacher_dir is not None else None

        def train_all() -> dict:
            import tempfile
            from pathlib import Path

            work = root / "work" if root is not None else Path(tempfile.mkdtemp(prefix="hetcomp-"))
            perms = torch.stack([self._train_teacher(spec, work / f"teacher{j}", ctx.seed + j)
                                 for j, spec in enumerate(specs)])  # [T, C, U, K]
            import shutil

            shutil.rmtree(work, ignore_errors=True)
            return {"perms": perms, "teachers": specs}

        path = root / "trajectory.pt" if root is not None else None
        return cached_torch(path, train_all, {"signature": sig}, what="hetcomp trajectories")["perms"]

    def setup(self, ctx) -> None:
        self.ctx = ctx
        self.T_user = self.T_item = None
        task = ctx.task
        perms = self._trajectories().to(task.device)  # [T, C, U, K]
        self.targets = torch.stack([ensemble_topk(list(perms[:, v]), task.num_items, self.cfg.K)
                                    for v in range(perms.shape[1])])  # [C, U, K]
        self._aux = nn.ModuleDict({"curriculum": CurriculumState(task.num_users)})
        train = task.csr["train"]
        counts = train.counts
        c = self.cfg
        min_deg = int(counts[counts > 0].min())
        self.num_pos = c.num_pos or min_deg
        if self.num_pos > min_deg:
            raise ConfigError(f"distiller hetcomp: num_pos {self.num_pos} exceeds the smallest train "
                              f"degree {min_deg} (fixed positives: use num_pos <= {min_deg} or 0)")
        self.pos = first_positives(train.indptr, train.items, self.num_pos)

    # ---------------------------------------------------------------- curriculum
    @torch.no_grad()
    def on_epoch_start(self, epoch: int) -> None:
        task, c = self.ctx.task, self.cfg
        st = self._aux["curriculum"]
        last = self.targets.shape[0] - 1
        if epoch >= c.p and epoch % c.p == 0 and bool((st.idx < last).any()):
            student_top = task.topn(self.ctx.student, c.K)
            users = torch.arange(task.num_users, device=task.device)
            nxt = (st.idx + 1).clamp_max(last)
            d_next = 1 - ndcg_overlap(student_top, self.targets[nxt, users], task.num_items)
            if not bool(st.started):
                st.last_dist.copy_(d_next)
                st.started.fill_(True)
            else:
                th = c.alpha * 0.995 ** (epoch // c.p)
                ratio = st.last_dist / d_next.clamp_min(1e-10)
                move = (st.idx < last) & ((ratio > th) | (ratio < 1))
                st.idx.copy_(torch.where(move, nxt, st.idx))
                nn_ = (st.idx + 1).clamp_max(last)
                d_nn = 1 - ndcg_overlap(student_top, self.targets[nn_, users], task.num_items)
                st.last_dist.copy_(torch.where(move, d_nn, st.last_dist))
            log.info("hetcomp epoch %d: mean checkpoint index %.2f of %d", epoch + 1,
                     float(st.idx.float().mean()), last)

    # ---------------------------------------------------------------- losses
    def kd_loss(self, U, I, batch) -> torch.Tensor:
        task, c = self.ctx.task, self.cfg
        users = torch.unique(batch.users)
        B = users.shape[0]
        observed = task.csr["train"].of_users(users)  # the batch users' train pairs: (row in the batch, item)
        st = self._aux["curriculum"]
        last = self.targets.shape[0] - 1
        idx = st.idx[users]
        final = idx >= last
        n_final = int(final.sum())  # one host sync per batch: compute only the losses in use
        overall, listwise = hetcomp_losses(U[users], I, observed, self.pos[users],
                                           self.targets[idx, users], overall=n_final < B, listwise=n_final > 0)
        if listwise is None:
            return c.overall_factor * overall.sum()
        if overall is None:
            return listwise.sum()
        return torch.where(final, listwise, c.overall_factor * overall).sum()


def first_positives(indptr: torch.Tensor, items: torch.Tensor, n: int) -> torch.Tensor:
    """[U, n]: each user's first ``n`` train items in CSR (data) order; users with fewer than
    ``n`` repeat their last one (users without train items get item ``items[indptr[u]]``, unused)."""
    off = torch.arange(n, device=items.device)[None, :]
    last = (indptr[1:] - 1).clamp_min(indptr[:-1])[:, None]
    return items[torch.minimum(indptr[:-1, None] + off, last).clamp_max(items.numel() - 1)]


SCORE_BOUND = 40.0  # scores are clamped to +-40 (the reference), so exp() neither overflows nor underflows


def rest_chunk(n_rows: int, device: torch.device) -> int:
    """Items per block of ``_RestMass``: on CPU a [rows, chunk] float32 block of ~1 MB, so it
    stays in cache between the product, the exp and the sums that read it; on a GPU blocks of
    ~256 MB, so a Gowalla batch is one or two launches per step."""
    per_block = 2**26 if device.type == "cuda" else 2**18
    return max(16, per_block // max(n_rows, 1))


class _RestMass(torch.autograd.Function):
    """Per row b: ``sum_j exp(clamp(u_b . i_j, -40, 40))`` over the items j outside the excluded
    (row, item) pairs, differentiable in ``u`` and ``I``.

    The [B, n_items] score matrix is never held whole: items are taken in blocks of ``chunk``
    (``rest_chunk``), each block's scores made, exponentiated, its excluded pairs zeroed and read
    twice while it is in cache (the row sums, and ``sum_j e_bj i_j``, which the backward scales by
    the incoming gradient to give ``du``); the backward makes each block again for ``dI``. On
    Gowalla (~2,000 users x 40,981 items per batch) one 325 MB buffer read and written ~9 times
    per step was most of HetComp's step (docs/topk.md, "HetComp's rests")."""

    @staticmethod
    def forward(ctx, u, I, ex_rows, ex_cols, chunk):
        # float32 with autocast off: exp() of bf16 scores would lose the sums
        with torch.autocast(u.device.type, enabled=False):
            u, I = at_least_float32(u), at_least_float32(I)
            # Cauchy-Schwarz bounds every score: clamp (and mask its gradient) only when it can bite
            bound = u.norm(dim=1).max() * I.norm(dim=1).max() if u.numel() and I.numel() else u.new_zeros(())
            order = torch.argsort(ex_cols)
            ex_rows, ex_cols = ex_rows[order], ex_cols[order]
            starts = torch.arange(0, I.shape[0], chunk, device=I.device)
            cuts = torch.searchsorted(ex_cols, torch.cat([starts, starts.new_tensor([I.shape[0]])]))
            *cuts, clamp = torch.cat([cuts, (bound > SCORE_BOUND).long().reshape(1)]).tolist()  # one host sync
            clamp = bool(clamp)
            total = u.new_zeros(u.shape[0])
            weighted = torch.zeros_like(u)  # sum_j e_bj i_j, what du needs
            for a, e in _exp_blocks(u, I, ex_rows, ex_cols, chunk, cuts, clamp, total):
                weighted.addmm_(e, I[a:a + chunk])
            ctx.save_for_backward(u, I, ex_rows, ex_cols, weighted)
            ctx.plan = chunk, cuts, clamp
            return total

    @staticmethod
    def backward(ctx, g):
        u, I, ex_rows, ex_cols, weighted = ctx.saved_tensors
        chunk, cuts, clamp = ctx.plan
        with torch.autocast(u.device.type, enabled=False):
            g = g.to(u.dtype)
            du = weighted * g[:, None] if ctx.needs_input_grad[0] else None
            dI = None
            if ctx.needs_input_grad[1]:
                gu = u * g[:, None]
                dI = torch.empty_like(I)
                for a, e in _exp_blocks(u, I, ex_rows, ex_cols, chunk, cuts, clamp, None):
                    torch.mm(e.T, gu, out=dI[a:a + chunk])
        return du, dI, None, None, None


def _exp_blocks(u, I, ex_rows, ex_cols, chunk, cuts, clamp, total):
    """Yield (first item, ``exp(clamp(u . i))`` [B, chunk]) per item block, its excluded pairs
    zeroed, and where a score was past the clamp zeroed after adding the block's row sums to
    ``total`` (the clamp passes no gradient there)."""
    for k, a in enumerate(range(0, I.shape[0], chunk)):
        e = u @ I[a:a + chunk].T
        outside = None
        if clamp:
            outside = e.abs() > SCORE_BOUND
            e.clamp_(-SCORE_BOUND, SCORE_BOUND)
        e.exp_()
        lo, hi = cuts[k], cuts[k + 1]
        if hi > lo:
            e[ex_rows[lo:hi], ex_cols[lo:hi] - a] = 0.0
        if total is not None:
            total += e.sum(1)
        if outside is not None:
            e.masked_fill_(outside, 0.0)
        yield a, e


def hetcomp_losses(u: torch.Tensor, I: torch.Tensor, observed: tuple[torch.Tensor, torch.Tensor],
                   pos: torch.Tensor, target: torch.Tensor, overall: bool = True,
                   listwise: bool = True, chunk: int | None = None,
                   ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-row (overall, listwise) losses for user representations ``u`` [B, d] over all items
    ``I`` [n, d], with the batch's train pairs ``observed`` = (rows, items), positives ``pos``
    [B, P] and the ranked target ``target`` [B, K] (distinct items per row); a loss not asked for
    is None (not computed). Scores are ``clamp(u . i, -40, 40)``; ``chunk`` items per block of the
    all-items pass (None: ``rest_chunk``).

    Every "rest" is the unobserved items minus a prefix of the target, so one pass over all items
    gives the smallest (minus the whole target) and the others add the target items after their
    prefix: sums of positive terms only, no cancellation."""
    B, K = target.shape
    rows = torch.arange(B, device=u.device)[:, None]
    obs_rows, obs_items = observed
    rest_all = _RestMass.apply(u, I, torch.cat([obs_rows, rows.expand(B, K).reshape(-1)]),
                               torch.cat([obs_items, target.reshape(-1)]),  # minus observed and target
                               chunk or rest_chunk(B, u.device))

    def scores(items: torch.Tensor) -> torch.Tensor:
        return (u[:, None, :] * I[items]).sum(-1).clamp(-SCORE_BOUND, SCORE_BOUND)

    s_pos, s_tgt = scores(pos), scores(target)
    n = I.shape[0]
    obs_keys = torch.sort(obs_rows * n + obs_items).values
    tgt_observed = (member(obs_keys, rows.expand(B, K), target, n) if obs_keys.numel()
                    else torch.zeros_like(target, dtype=torch.bool))
    tgt_mass = torch.exp(s_tgt).masked_fill(tgt_observed, 0.0)

    def log_rest(prefix: int) -> torch.Tensor:
        """log sum exp over unobserved items not in ``target[:, :prefix]``."""
        return torch.log(rest_all + tgt_mass[:, prefix:].sum(1))

    out_overall = out_listwise = None
    if overall:  # every positive / target item above every non-target unobserved item
        tops = torch.cat([s_pos, s_tgt], 1)
        out_overall = -(tops - torch.logaddexp(tops, log_rest(K)[:, None])).sum(1)
    if listwise:  # the last checkpoint's
        half, tenth = max(K // 2, 1), max(K // 10, 1)
        lr_half = log_rest(half)
        out_listwise = (plackett_luce_relaxed(s_pos, lr_half)
                        + 0.5 * (plackett_luce_relaxed(s_tgt[:, :half], lr_half)
                                 + plackett_luce_relaxed(s_tgt[:, :tenth], log_rest(tenth))))
    return out_overall, out_listwise
