"""Avazu (Kaggle CTR, 2014): ``id, click, hour, C1, banner_pos, ...`` with a header. ``hour``
(YYMMDDHH) becomes ``hour_of_day`` (0-23) and ``weekday`` (1 = Monday .. 7 = Sunday); ``id`` is
dropped (unique per row); one table is split 8:1:1 by a seeded hash (``split``, ``seed``)."""

from __future__ import annotations

import polars as pl

from kdrec.data.registry import DataPaths, register_dataset
from kdrec.data.sources.table import TableConfig, build_table
from kdrec.data.spec import CTRDataset

DERIVED = ("hour_of_day", "weekday")


def derive_hour(lf: pl.LazyFrame) -> pl.LazyFrame:
    h = pl.col("hour").str.strip_chars()
    return lf.with_columns(
        h.str.slice(6, 2).cast(pl.Int32, strict=False).cast(pl.String).alias("hour_of_day"),
        h.str.slice(0, 6).str.strptime(pl.Date, "%y%m%d", strict=False).dt.weekday().cast(pl.String).alias("weekday"),
    )


HOUR_CHECK = (~pl.col("hour").str.strip_chars().str.contains(r"^\d{8}$").fill_null(False)
              | pl.col("hour").str.strip_chars().str.slice(0, 6).str.strptime(pl.Date, "%y%m%d", strict=False).is_null()
              | (pl.col("hour").str.strip_chars().str.slice(6, 2).cast(pl.Int32, strict=False) > 23))


@register_dataset("avazu", task="ctr", config=TableConfig)
def build_avazu(cfg: TableConfig, paths: DataPaths) -> CTRDataset:
    return build_table("avazu", cfg, paths, derive=derive_hour, derived=DERIVED,
                       extra_checks={"hour": (HOUR_CHECK, "an hour stamp YYMMDDHH")})
