"""Implicit-feedback (top-K) datasets: user-item interaction sets with train/valid/test splits.

Every top-K source returns an :class:`InteractionDataset`: contiguous user ids ``0..U-1`` and item
ids ``0..I-1`` and, per split, two int64 tensors (users, items) sorted by user then item, one row
per interaction, duplicates removed. The ``feature_map`` (:class:`TopKFeatureMap`) is what top-K
model constructors take first: sizes, plus the train edges a graph model (LightGCN) needs.

Encoded splits are cached as one parquet (``user, item, split``) + ``feature_map.json`` under
``<cache>/data/<dataset>-<signature>/``; the signature hashes the raw files and the split config.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl
import torch

from kdrec.artifacts import file_digest, signature
from kdrec.cache import cached_dir
from kdrec.errors import DataError

log = logging.getLogger("kdrec")
SPLITS = ("train", "valid", "test")


@dataclass
class TopKFeatureMap:
    dataset: str
    num_users: int
    num_items: int
    # train edges (for graph models); not serialized
    train_users: torch.Tensor | None = field(default=None, repr=False)
    train_items: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"kind": "topk", "dataset": self.dataset, "num_users": self.num_users,
                "num_items": self.num_items}


@dataclass
class InteractionSplit:
    users: torch.Tensor  # int64 [N], sorted by (user, item)
    items: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return self.users.shape[0]

    def to(self, device) -> "InteractionSplit":
        return InteractionSplit(self.users.to(device), self.items.to(device))


@dataclass
class InteractionDataset:
    feature_map: TopKFeatureMap
    splits: dict[str, InteractionSplit]
    signature: str = ""
    source_dir: Path | None = None
    # "test" when the validation split *is* the test split (LightGCN/BARS Gowalla protocol)
    valid_is: str = "valid"
    ks: tuple[int, ...] = (10, 20, 50)  # cut-offs of recall/ndcg/hit (20 is always included)
    # BPR triples per epoch: "interaction" (every train pair once) or "user" (a uniform user, then
    # one of its train items, as many draws as train pairs: LightGCN's and freerec's sampler)
    sampling: str = "interaction"

    def __getitem__(self, split: str) -> InteractionSplit:
        return self.splits[split]


# ------------------------------------------------------------------ vectorized split helpers
def dedupe_sort(users: torch.Tensor, items: torch.Tensor, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    key = torch.unique(users.long() * num_items + items.long())  # sorted
    return key // num_items, key % num_items


def rank_within_user(users: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based position of each row inside its user when ordered by ``key`` (ties by row order),
    and the user's row count, both aligned with the input rows."""
    n = users.shape[0]
    o1 = torch.argsort(key, stable=True)
    o2 = torch.argsort(users[o1], stable=True)
    order = o1[o2]  # rows sorted by (user, key)
    su = users[order]
    counts = torch.bincount(su, minlength=int(su.max()) + 1 if n else 0)
    starts = torch.cumsum(counts, 0) - counts
    pos_sorted = torch.arange(n) - starts[su]
    pos = torch.empty_like(pos_sorted)
    pos[order] = pos_sorted
    return pos, counts[users]


def split_by_position(pos: torch.Tensor, count: torch.Tensor, fractions: list[float]) -> torch.Tensor:
    """Split label per row (0 train, 1 valid, 2 test): the last ``round(f_test*n)`` positions go
    to test and the ``round(f_valid*n)`` before them to valid; every user keeps >= 1 train row."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split fractions must be three numbers summing to 1, got {fractions}")
    n_test = torch.round(count.double() * fractions[2]).long()
    n_valid = torch.round(count.double() * fractions[1]).long()
    spare = (count - 1).clamp_min(0)
    n_test = torch.minimum(n_test, spare)
    n_valid = torch.minimum(n_valid, spare - n_test)
    label = torch.zeros_like(pos)
    label[pos >= count - n_test - n_valid] = 1
    label[pos >= count - n_test] = 2
    return label


def random_split(users: torch.Tensor, fractions: list[float], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    key = torch.rand(users.shape[0], generator=g)
    pos, count = rank_within_user(users, key)
    return split_by_position(pos, count, fractions)


def leave_one_out(users: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
    """Latest interaction -> test, second latest -> valid (users with >= 3 rows), rest train."""
    pos, count = rank_within_user(users, timestamps)
    label = torch.zeros_like(pos)
    label[(pos == count - 2) & (count >= 3)] = 1
    label[(pos == count - 1) & (count >= 2)] = 2
    return label


def with_ks(ds: InteractionDataset, ks) -> InteractionDataset:
    ks = sorted({int(k) for k in ks} | {20})  # ndcg@20 is the early-stopping monitor
    if ks[0] < 1:
        raise DataError(f"dataset {ds.feature_map.dataset}: ks must be positive, got {ks}")
    ds.ks = tuple(ks)
    return ds


def build_dataset(name: str, users: torch.Tensor, items: torch.Tensor, label: torch.Tensor,
                  num_users: int, num_items: int, sig: str, valid_is: str = "valid",
                  source_dir: Path | None = None) -> InteractionDataset:
    splits = {}
    for i, s in enumerate(SPLITS):
        m = label == i
        u, it = dedupe_sort(users[m], items[m], num_items)
        splits[s] = InteractionSplit(u, it)
    if valid_is == "test":
        splits["valid"] = splits["test"]
    if len(splits["train"]) == 0:
        raise DataError(f"dataset {name}: empty train split")
    for s in ("valid", "test"):
        if len(splits[s]) == 0:  # e.g. every user has one interaction: all of it goes to train
            raise DataError(f"dataset {name}: the {s} split is empty ({len(splits['train']):,} train "
                            f"interactions of {num_users:,} users): users need several interactions "
                            "for held-out ones to exist; check the file or the split settings")
    fmap = TopKFeatureMap(name, num_users, num_items, splits["train"].users, splits["train"].items)
    return InteractionDataset(fmap, splits, sig, source_dir, valid_is)


# ------------------------------------------------------------------ encoding cache
def encode_cached(name: str, raw_files: list[Path], params: dict, cache_root: Path,
                  encode: Callable[[], tuple[pl.DataFrame, int, int]],
                  valid_is: str = "valid") -> InteractionDataset:
    """``encode()`` returns a frame (user, item, split in {0,1,2}) with contiguous ids, and the
    user / item counts. Its output is cached by the raw files' content hash and ``params``."""
    for p in raw_files:
        if not Path(p).is_file():
            raise DataError(f"dataset {name}: raw file {p} not found (set KDREC_DATA_DIR or paths.data_root)")
    sig = signature(file_digest(raw_files), params)
    out = Path(cache_root) / f"{name}-{sig}"

    def build(tmp: Path) -> None:
        df, n_users, n_items = encode()
        m = {"kind": "topk", "dataset": name, "num_users": n_users, "num_items": n_items,
             "rows": {s: int((df["split"] == i).sum()) for i, s in enumerate(SPLITS)}}
        df.write_parquet(tmp / "interactions.parquet")
        (tmp / "feature_map.json").write_text(json.dumps(m, indent=2))
        log.info("dataset %s: encoded %d interactions into %s", name, df.height, out)

    cached_dir(out, build, what=f"dataset {name} encoding")
    df = pl.read_parquet(out / "interactions.parquet")
    m = json.loads((out / "feature_map.json").read_text())
    t = lambda c: torch.from_numpy(df[c].to_numpy().astype("int64"))  # noqa: E731
    return build_dataset(name, t("user"), t("item"), t("split"), m["num_users"], m["num_items"],
                         sig, valid_is, out)


def encode_ids(df: pl.DataFrame, user_col: str, item_col: str) -> tuple[pl.DataFrame, int, int]:
    """Map raw user/item keys to contiguous ids (dense rank of the sorted raw keys)."""
    df = df.with_columns(pl.col(user_col).rank("dense").cast(pl.Int64).alias("user") - 1,
                         pl.col(item_col).rank("dense").cast(pl.Int64).alias("item") - 1)
    return df, int(df["user"].max()) + 1, int(df["item"].max()) + 1
