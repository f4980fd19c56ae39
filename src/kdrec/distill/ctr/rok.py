"""``distiller=rok``: retrieval-oriented knowledge (Liu et al., CIKM 2024) from a retrieval
teacher (``teacher=rim``) into any CTR backbone (``student=``).

Stage 1 (offline, cached beside the teacher): the frozen teacher's aggregated representation r_i
of every train/valid/test row (its own retrieval included) is stored once; the knowledge base
(retrieval-oriented embeddings + knowledge encoder, :mod:`kdrec.models.ctr.rok`) is trained to
predict r_i from the row alone with ``mse_weight * MSE(r-hat, r) + contrastive_weight *
InfoNCE(r-hat, r)`` (cosine similarities / temperature, in-batch negatives), early-stopped on the
validation loss, and cached per (teacher, settings, seed), so every backbone reuses it.
Stage 2: the backbone with the knowledge base plugged in (instance-wise and/or feature-wise) is
trained on the task loss, the knowledge base frozen (``freeze_kb``) or fine-tuned.
``kb_init`` says where the knowledge base's weights come from: ``pretrained`` (stage 1),
``scratch`` (no stage 1: the modules' own initialisation, trained end to end with the backbone, the
"without KD loss" ablation) or ``random`` (a random draw at the scale of the seed's pretrained
knowledge base, never trained; frozen, it is the same-capacity control: the backbone on 2F fields
and the instance head with a knowledge base that holds no retrieval knowledge).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from kdrec.artifacts import signature
from kdrec.cache import cached_torch
from kdrec.distill.base import DistillContext, Distiller, Phase, register_distiller, unique_params
from kdrec.errors import ConfigError
from kdrec.models.ctr.rok import KnowledgeBase, ROKStudent, ROKStudentConfig
from kdrec.train.config import TrainConfig

log = logging.getLogger("kdrec")

KB_INITS = ("pretrained", "scratch", "random")


def info_nce(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE with in-batch negatives: row i's positive is target i, the other targets of the
    batch are its negatives; similarity = cosine / temperature."""
    logits = F.normalize(pred, dim=1) @ F.normalize(target, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(pred.shape[0], device=pred.device))


@dataclass
class ROKConfig:
    knowledge: str = "aggregated"  # teacher representation: aggregated ([r, l]) | hidden (last MLP layer)
    # scale of r before the losses (train statistics): global = centre per dimension, divide by
    # one overall std (keeps the dimensions' relative weight); dim = z-score each dimension; none
    normalize_targets: str = "global"
    ro_embed_dim: int = 10
    encoder_hidden: list[int] = field(default_factory=lambda: [256])
    mse_weight: float = 1.0  # the distillation (KD) term
    contrastive_weight: float = 1.0  # alpha: the InfoNCE term (0 = no contrastive loss)
    temperature: float = 0.1
    # pretrained: stage 1 | scratch: the modules' init, trained end to end (needs freeze_kb=false)
    # | random: every tensor drawn at the pretrained knowledge base's scale (the capacity control)
    kb_init: str = "pretrained"
    pretrain_epochs: int = 10
    pretrain_lr: float = 1.0e-3
    pretrain_batch_size: int = 1024  # also the number of InfoNCE in-batch candidates
    pretrain_patience: int = 2
    instance: bool = True
    feature: bool = True
    instance_hidden: list[int] = field(default_factory=list)
    freeze_kb: bool = True
    zero_init: bool = True  # integration starts from the backbone alone (zero head, zero gates)


class KnowledgeTask:
    """The CTR task seen by the one training loop while it fits the knowledge base: same batches,
    but the model is the knowledge base and the monitor is the validation loss."""

    monitor, monitor_mode = "loss", "min"

    def __init__(self, task, targets: dict, loss_fn, batch_size: int):
        self.task, self.targets, self.loss_fn, self.batch_size = task, targets, loss_fn, batch_size
        self.device = task.device

    def num_rows(self, split: str = "train") -> int:
        return self.task.num_rows(split)

    def train_batches(self, generator, batch_size=None, negatives=1):
        return self.task.train_batches(generator, batch_size, negatives)

    @torch.no_grad()
    def evaluate(self, kb, split: str) -> dict[str, float]:
        was = kb.training
        kb.eval()
        x, r = self.task.splits[split].x, self.targets[split]
        bs = self.batch_size
        parts = [self.loss_fn(kb(x[i:i + bs])[0], r[i:i + bs], detail=True)
                 for i in range(0, x.shape[0], bs)]
        kb.train(was)
        w = torch.tensor([min(bs, x.shape[0] - i) for i in range(0, x.shape[0], bs)],
                         dtype=torch.float32, device=self.device)
        out = {k: float((torch.stack([p[k] for p in parts]) * w).sum() / w.sum()) for k in parts[0]}
        return out


@register_distiller("rok")
class ROK(Distiller):
    Config = ROKConfig

    def __init__(self, cfg: ROKConfig):
        super().__init__(cfg)
        if cfg.normalize_targets not in ("global", "dim", "none"):
            raise ConfigError("distiller.normalize_targets must be global, dim or none, "
                              f"not {cfg.normalize_targets!r}")
        if cfg.knowledge not in ("aggregated", "hidden"):
            raise ConfigError(f"distiller.knowledge must be aggregated or hidden, not {cfg.knowledge!r}")
        if cfg.kb_init not in KB_INITS:
            raise ConfigError(f"distiller.kb_init must be one of {KB_INITS}, not {cfg.kb_init!r}")
        if cfg.kb_init == "pretrained" and cfg.mse_weight <= 0 and cfg.contrastive_weight <= 0:
            raise ConfigError("distiller rok: kb_init=pretrained needs mse_weight > 0 or contrastive_weight > 0")
        if cfg.kb_init == "scratch" and cfg.freeze_kb:
            raise ConfigError("distiller rok: kb_init=scratch with freeze_kb=true would keep the knowledge "
                              "base at its near-zero initialisation, never trained; use freeze_kb=false "
                              "(trained end to end) or kb_init=random (the frozen random control)")

    # ------------------------------------------------------------------ model
    def build_student(self, student_cfg, feature_map, teacher):
        if teacher is None or not hasattr(teacher, "represent"):
            raise ConfigError("distiller=rok needs a retrieval teacher with represent() (teacher=rim)")
        c = self.cfg
        backbone = OmegaConf.to_container(student_cfg, resolve=True) \
            if OmegaConf.is_config(student_cfg) else dict(student_cfg)
        backbone.pop("train", None)
        cfg = ROKStudentConfig(backbone=backbone, repr_dim=teacher.repr_size(c.knowledge),
                               ro_embed_dim=c.ro_embed_dim, encoder_hidden=list(c.encoder_hidden),
                               instance=c.instance, feature=c.feature,
                               instance_hidden=list(c.instance_hidden), zero_init=c.zero_init)
        return ROKStudent(feature_map, cfg)

    # ------------------------------------------------------------------ stage 1
    def loss_fn(self, r_hat, r, detail: bool = False):
        c = self.cfg
        mse = F.mse_loss(r_hat, r)
        nce = info_nce(r_hat, r, c.temperature) if c.contrastive_weight > 0 else mse.new_zeros(())
        loss = c.mse_weight * mse + c.contrastive_weight * nce
        return {"loss": loss, "mse": mse, "infonce": nce} if detail else loss

    def teacher_targets(self, ctx: DistillContext) -> dict:
        task, teacher = ctx.task, ctx.teacher

        @torch.no_grad()
        def represent(split: str) -> torch.Tensor:
            teacher.eval()
            x = task.splits[split].x
            rows = torch.arange(x.shape[0], device=x.device)
            bs = task.eval_batch_size
            return torch.cat([teacher.represent(*task.model_inputs(teacher, split, rows[i:i + bs],
                                                                   x[i:i + bs]), kind=self.cfg.knowledge)
                              for i in range(0, x.shape[0], bs)])

        out = {split: task.teacher_cache(f"rok_{self.cfg.knowledge}_{split}", ctx.teacher_dir,
                                         lambda split=split: represent(split))
               for split in ("train", "valid", "test")}
        mode = self.cfg.normalize_targets
        if mode != "none":
            mu = out["train"].mean(0)
            sd = (out["train"].std(0) if mode == "dim" else (out["train"] - mu).std()).clamp_min(1e-8)
            out = {k: (v - mu) / sd for k, v in out.items()}
        return out

    def kb_signature(self, ctx: DistillContext) -> str:
        keys = ["knowledge", "normalize_targets", "ro_embed_dim", "encoder_hidden", "mse_weight",
                "contrastive_weight", "temperature", "pretrain_epochs", "pretrain_lr",
                "pretrain_batch_size", "pretrain_patience"]
        c = asdict(self.cfg)
        # "own-init": stage 1 starts from the seed's own draw (before, from wherever the first
        # backbone's construction left the random stream), so earlier cached bases are not reused
        return signature({k: c[k] for k in keys}, ctx.seed, ctx.student.kb.repr_dim, "own-init")

    def setup(self, ctx: DistillContext) -> None:
        self.stage1 = None
        if self.cfg.kb_init == "scratch":
            return
        kb = ctx.student.kb
        sig = self.kb_signature(ctx)
        cache = ctx.teacher_dir / "cache" / f"rok_kb-{sig}.pt" if ctx.teacher_dir else None
        # trained once per (teacher, settings, seed) and shared by every backbone (and the control)
        state = cached_torch(cache, lambda: self.train_kb(ctx, kb, sig), what="rok knowledge base")
        if self.cfg.kb_init == "random":
            self.randomize_kb(kb, state["state_dict"], ctx.seed)
            return
        kb.load_state_dict(state["state_dict"])
        self.stage1 = state["result"]

    @staticmethod
    @torch.no_grad()
    def randomize_kb(kb, pretrained: dict, seed: int) -> None:
        """The control's knowledge base: each weight tensor (each field's rows of the embedding
        table) drawn i.i.d. normal with the mean and std of the pretrained one, so the scale is
        ROK's but no value's vector carries what the teacher knows. Scale matters: a fresh
        knowledge base (embeddings at 1e-4) gives a constant r-hat and ~zero extra fields, a control
        without the capacity. Own generator: the global random stream (data order) stays ROK's."""
        g = torch.Generator().manual_seed(seed)

        def draw(ref: torch.Tensor) -> torch.Tensor:
            sd, mu = torch.std_mean(ref.float(), correction=0)
            return mu + sd * torch.randn(ref.shape, generator=g)

        for name, p in kb.named_parameters():
            ref = pretrained[name].cpu()
            if p is kb.ro_embedding.weight:
                new = torch.cat([draw(part) for part in ref.split(kb.ro_embedding.vocab_sizes)])
            else:
                new = draw(ref)
            p.copy_(new)

    def train_kb(self, ctx: DistillContext, kb, sig: str) -> dict:
        from kdrec.train.loop import fit

        # the knowledge base is shared by every backbone of the seed, so it starts from a draw of
        # its own: otherwise the backbone built before it (in whichever run trains it first)
        # would decide its initialisation, and a run's result would depend on the order of runs
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            fresh = KnowledgeBase(kb.ro_embedding.vocab_sizes, kb.ro_embedding.dim,
                                  list(self.cfg.encoder_hidden), kb.repr_dim)
        kb.load_state_dict(fresh.state_dict())
        targets = self.teacher_targets(ctx)
        ktask = KnowledgeTask(ctx.task, targets, self.loss_fn, self.cfg.pretrain_batch_size)

        def loss(batch):
            return self.loss_fn(kb(batch.x)[0], targets["train"][batch.idx])

        c = self.cfg
        tcfg = TrainConfig(epochs=c.pretrain_epochs, batch_size=c.pretrain_batch_size,
                           lr=c.pretrain_lr, patience=c.pretrain_patience, progress=False)
        work = (ctx.teacher_dir / "cache" / f"rok_kb-{sig}-work") if ctx.teacher_dir else None
        if work is None:
            import tempfile
            from pathlib import Path

            work = Path(tempfile.mkdtemp(prefix="rok_kb-"))
        kb.to(ctx.device)
        res = fit(Phase("knowledge", loss, unique_params(kb.parameters()), [kb]), ktask, tcfg,
                  ckpt_dir=work, seed=ctx.seed, save_modules={"model": kb}, resume=True)
        result = {**res.__dict__, "test": ktask.evaluate(kb, "test")}
        log.info("rok: knowledge base valid %s, test %s", res.best_valid, result["test"])
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        return {"state_dict": kb.state_dict(), "result": result}

    # ------------------------------------------------------------------ stage 2
    def phases(self, ctx: DistillContext) -> list[Phase]:
        s = ctx.student
        kb_ids = {id(p) for p in s.kb_parameters()}
        params = [p for p in unique_params(s.parameters()) if not (self.cfg.freeze_kb and id(p) in kb_ids)]

        def loss(batch):
            return ctx.task.task_loss(s, batch)

        return [Phase("train", loss, params, [s])]

    def report(self) -> dict:
        return {"knowledge_base": self.stage1} if getattr(self, "stage1", None) else {}
