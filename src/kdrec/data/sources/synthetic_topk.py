"""``synthetic_topk``: generated implicit feedback with latent cluster structure, in memory.

Users and items each belong to one of ``num_clusters`` clusters; a user's latent vector is its
cluster centre plus noise, likewise for items. A user with ``n_u`` interactions (uniform in
``[min_items, max_items]``) draws them without replacement with probability proportional to
``pop_i * exp(sharpness * <u, i>)`` (item popularity follows a power law). So collaborative models
learn the clusters and a bigger model ranks better. Split per user at random 80/10/10."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kdrec.artifacts import signature
from kdrec.data.interactions import with_ks, InteractionDataset, build_dataset, random_split
from kdrec.data.registry import DataPaths, register_dataset


@dataclass
class SyntheticTopKConfig:
    num_users: int = 1000
    num_items: int = 800
    num_clusters: int = 10
    latent_dim: int = 16
    noise: float = 0.5
    sharpness: float = 1.5
    zipf_exponent: float = 0.6
    min_items: int = 10
    max_items: int = 40
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 2024
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])  # metric cut-offs


def generate(cfg: SyntheticTopKConfig) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed)
    centres = torch.randn(cfg.num_clusters, cfg.latent_dim, generator=g)
    cu = torch.randint(cfg.num_clusters, (cfg.num_users,), generator=g)
    ci = torch.randint(cfg.num_clusters, (cfg.num_items,), generator=g)
    u = centres[cu] + cfg.noise * torch.randn(cfg.num_users, cfg.latent_dim, generator=g)
    v = centres[ci] + cfg.noise * torch.randn(cfg.num_items, cfg.latent_dim, generator=g)
    logits = cfg.sharpness * (u @ v.T) / cfg.latent_dim ** 0.5
    pop = 1.0 / torch.arange(1, cfg.num_items + 1, dtype=torch.float32) ** cfg.zipf_exponent
    pop = pop[torch.randperm(cfg.num_items, generator=g)]
    probs = torch.softmax(logits, 1) * pop
    n_u = torch.randint(cfg.min_items, cfg.max_items + 1, (cfg.num_users,), generator=g)
    picks = torch.multinomial(probs, cfg.max_items, replacement=False, generator=g)
    keep = torch.arange(cfg.max_items).expand(cfg.num_users, -1) < n_u[:, None]
    users = torch.arange(cfg.num_users)[:, None].expand_as(picks)
    return users[keep], picks[keep]


@register_dataset("synthetic_topk", task="topk", config=SyntheticTopKConfig)
def build(cfg: SyntheticTopKConfig, paths: DataPaths) -> InteractionDataset:
    users, items = generate(cfg)
    label = random_split(users, list(cfg.split), cfg.seed)
    return with_ks(build_dataset("synthetic_topk", users, items, label, cfg.num_users, cfg.num_items,
                         signature(cfg.__dict__)), cfg.ks)
