"""``gowalla_m1``: the LightGCN/NGCF Gowalla split as BARS ships it (``train.txt``/``test.txt``,
one line per user: ``user item item ...``). Train and test are given. BARS and LightGCN monitor the
test split during training (there is no validation file), so ``valid_from: test`` (the default)
makes ``valid`` an alias of ``test``; ``valid_from: train`` carves ``valid_fraction`` of each
user's train items (seeded) into a separate validation split instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import torch

from kdrec.data.interactions import with_ks, InteractionDataset, encode_cached, random_split
from kdrec.data.registry import DataPaths, register_dataset
from kdrec.errors import DataError


SAMPLINGS = ("interaction", "user")


@dataclass
class GowallaConfig:
    subdir: str = "gowalla_m1"
    valid_from: str = "test"  # test (BARS / LightGCN protocol) | train (held-out per user)
    valid_fraction: float = 0.1
    seed: int = 2024
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])  # metric cut-offs
    sampling: str = "interaction"  # BPR triples: interaction | user (LightGCN's official sampler)


def read_lightgcn_file(path: Path) -> pl.DataFrame:
    """``user item item ...`` lines -> (user, item) rows; users with no items are dropped."""
    lines = pl.read_csv(path, has_header=False, new_columns=["line"], separator="\x01",
                        quote_char=None, schema_overrides={"line": pl.Utf8})
    parts = lines.with_columns(pl.col("line").str.strip_chars().str.split(" ").alias("tok"))
    parts = parts.with_columns(pl.col("tok").list.first().alias("user"),
                               pl.col("tok").list.slice(1).alias("item")).explode("item")
    parts = parts.filter(pl.col("item").is_not_null() & (pl.col("item") != ""))
    try:
        return parts.select(pl.col("user").cast(pl.Int64), pl.col("item").cast(pl.Int64))
    except pl.exceptions.InvalidOperationError as exc:
        raise DataError(f"{path}: every line must be integer ids `user item item ...` ({exc})") from exc


@register_dataset("gowalla_m1", task="topk", config=GowallaConfig)
def build(cfg: GowallaConfig, paths: DataPaths) -> InteractionDataset:
    if cfg.sampling not in SAMPLINGS:
        raise DataError(f"dataset gowalla_m1: sampling must be one of {SAMPLINGS}, not {cfg.sampling!r}")
    if cfg.valid_from not in ("test", "train"):
        raise DataError(f"dataset gowalla_m1: valid_from must be 'test' or 'train', not {cfg.valid_from!r}")
    root = Path(paths.data_root) / cfg.subdir
    files = [root / "train.txt", root / "test.txt"]

    def encode():
        tr, te = read_lightgcn_file(files[0]), read_lightgcn_file(files[1])
        n_users = int(max(tr["user"].max(), te["user"].max())) + 1
        n_items = int(max(tr["item"].max(), te["item"].max())) + 1
        split = torch.zeros(tr.height, dtype=torch.int64)
        if cfg.valid_from == "train":
            u = torch.from_numpy(tr["user"].to_numpy().copy())
            split = random_split(u, [1 - cfg.valid_fraction, cfg.valid_fraction, 0.0], cfg.seed)
        tr = tr.with_columns(pl.Series("split", split.numpy()))
        te = te.with_columns(pl.lit(2, dtype=pl.Int64).alias("split"))
        return pl.concat([tr, te]), n_users, n_items

    params = {"valid_from": cfg.valid_from, **({"valid_fraction": cfg.valid_fraction, "seed": cfg.seed}
                                                 if cfg.valid_from == "train" else {})}
    ds = with_ks(encode_cached("gowalla_m1", files, params, paths.cache_root, encode,
                         valid_is="test" if cfg.valid_from == "test" else "valid"), cfg.ks)
    ds.sampling = cfg.sampling  # training-time only: not part of the encoded data's signature
    return ds
