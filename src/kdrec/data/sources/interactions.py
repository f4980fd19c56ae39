"""``interactions``: any CSV or parquet with a user and an item column (optionally a timestamp),
split per user either at random (``split_rule: random``, fractions ``split``) or leave-one-out by
timestamp (``split_rule: loo``: latest -> test, second latest -> valid). Relative ``path``s are
read under the data root. A CSV gets the table checks of :func:`kdrec.data.encode.open_table`
first (a header naming the columns, no ragged record, UTF-8, RFC 4180 quotes, a BOM skipped), so
bad input is one error naming the file and line, never a parser traceback."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import torch

from kdrec.data.encode import open_parquet, open_table
from kdrec.data.interactions import (InteractionDataset, with_ks, encode_cached, encode_ids, leave_one_out,
                                     random_split)
from kdrec.data.registry import DataPaths, register_dataset
from kdrec.errors import DataError


@dataclass
class InteractionsConfig:
    path: str = ""
    name: str = "interactions"  # dataset name used for the cache folder
    user_col: str = "user"
    item_col: str = "item"
    time_col: str | None = None
    separator: str = ","
    split_rule: str = "random"  # random | loo
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 2024
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])  # metric cut-offs


def _read(path: Path, cfg: InteractionsConfig, columns: list[str], paths: DataPaths) -> pl.DataFrame:
    if path.suffix == ".parquet":
        open_parquet(path, required=columns, paths=paths)
        return pl.read_parquet(path, columns=columns)
    open_table(path, required=columns, separator=cfg.separator, header=True, quoted=True, paths=paths)
    try:  # typed columns (numeric ids keep their numeric order)
        return pl.read_csv(path, separator=cfg.separator, columns=columns, infer_schema_length=10000,
                           quote_char='"')
    except pl.exceptions.PolarsError as exc:  # e.g. a text id after 10,000 numeric ones
        msg = str(exc).strip().splitlines()[0]
        raise DataError(f"{path}: cannot read columns {columns}: {msg}") from None


@register_dataset("interactions", task="topk", config=InteractionsConfig)
def build(cfg: InteractionsConfig, paths: DataPaths) -> InteractionDataset:
    if not cfg.path:
        raise DataError("dataset interactions: set dataset.path=<csv or parquet file>")
    if cfg.split_rule not in ("random", "loo"):
        raise DataError(f"dataset interactions: split_rule must be random or loo, not {cfg.split_rule!r}")
    if cfg.split_rule == "loo" and not cfg.time_col:
        raise DataError("dataset interactions: split_rule=loo needs time_col")
    p = Path(cfg.path)
    if not p.is_absolute():
        p = Path(paths.data_root) / p

    def encode():
        cols = [cfg.user_col, cfg.item_col] + ([cfg.time_col] if cfg.time_col else [])
        df = _read(p, cfg, cols, paths).select(cols).drop_nulls([cfg.user_col, cfg.item_col])
        if df.height == 0:
            raise DataError(f"{p}: no row has both a {cfg.user_col!r} and an {cfg.item_col!r} value")
        if cfg.time_col:  # keep the latest time of a repeated (user, item)
            df = df.group_by([cfg.user_col, cfg.item_col]).agg(pl.col(cfg.time_col).max())
        else:
            df = df.unique([cfg.user_col, cfg.item_col])
        df = df.sort([cfg.user_col, cfg.item_col])
        df, n_users, n_items = encode_ids(df, cfg.user_col, cfg.item_col)
        users = torch.from_numpy(df["user"].to_numpy().copy())
        if cfg.split_rule == "loo":
            ts = torch.from_numpy(df[cfg.time_col].cast(pl.Float64).to_numpy().copy())
            label = leave_one_out(users, ts)
        else:
            label = random_split(users, list(cfg.split), cfg.seed)
        return df.select("user", "item").with_columns(pl.Series("split", label.numpy())), n_users, n_items

    return with_ks(encode_cached(cfg.name, [p], {k: v for k, v in cfg.__dict__.items() if k != "path"},
                         paths.cache_root, encode), cfg.ks)
