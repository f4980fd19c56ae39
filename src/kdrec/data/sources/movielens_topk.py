"""``movielens_100k_topk``: every MovieLens-100K rating (1..5) as one implicit interaction;
each user's interactions are split at random (seeded) 80/10/10 into train/valid/test (every user
keeps at least one train item). Users and items are re-indexed densely in raw-id order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import torch

from kdrec.data.interactions import with_ks, InteractionDataset, encode_cached, encode_ids, random_split
from kdrec.data.registry import DataPaths, register_dataset


@dataclass
class MovieLensTopKConfig:
    subdir: str = "ml-100k"
    min_rating: int = 1  # ratings >= this count as interactions (1: all ratings)
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 2024
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])  # metric cut-offs


@register_dataset("movielens_100k_topk", task="topk", config=MovieLensTopKConfig)
def build(cfg: MovieLensTopKConfig, paths: DataPaths) -> InteractionDataset:
    f = Path(paths.data_root) / cfg.subdir / "u.data"

    def encode():
        df = pl.read_csv(f, has_header=False, separator="\t",
                         new_columns=["u", "i", "rating", "ts"],
                         schema_overrides={"u": pl.Int64, "i": pl.Int64, "rating": pl.Int64, "ts": pl.Int64})
        df = df.filter(pl.col("rating") >= cfg.min_rating).unique(["u", "i"]).sort(["u", "i"])
        df, n_users, n_items = encode_ids(df, "u", "i")
        users = torch.from_numpy(df["user"].to_numpy().copy())
        label = random_split(users, list(cfg.split), cfg.seed)
        return df.select("user", "item").with_columns(pl.Series("split", label.numpy())), n_users, n_items

    return with_ks(encode_cached("movielens_100k_topk", [f], {"min_rating": cfg.min_rating,
                                                      "split": list(cfg.split), "seed": cfg.seed},
                         paths.cache_root, encode), cfg.ks)
