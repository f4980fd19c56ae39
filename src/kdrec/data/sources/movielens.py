"""``movielens_100k``: MovieLens-100K as CTR. Each rating is a row, label = rating >= ``threshold``
(4 by default: "liked"). Fields come from ``u.data`` (user, item, hour and weekday of the rating),
``u.user`` (age bucket, gender, occupation, zip prefix) and ``u.item`` (release year; genres as
one categorical value: the item's genre set joined by '|'). The ratings are split 8:1:1 by a
seeded hash of their line number (``split``, ``seed``); vocabularies come from train only.
``u.item`` is Latin-1 (titles); only its ASCII columns are used."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from kdrec.data.encode import (EncodeOptions, Prepared, build_ctr, check_values, hash_split, open_table,
                               parse_fields, resolve, tokens, ROW, SPLIT, TIME)
from kdrec.data.registry import DataPaths, register_dataset
from kdrec.data.spec import CTRDataset
from kdrec.errors import ConfigError

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]
AVAILABLE = ("user", "item", "hour", "weekday", "age", "gender", "occupation", "zip", "year", "genres")


@dataclass
class MovieLensCTRConfig:
    dir: str = "ml-100k"  # relative to paths.data_root (KDREC_DATA_DIR) unless absolute
    threshold: int = 4  # label = rating >= threshold
    fields: list = field(default_factory=lambda: ["user", "item", "age", "gender", "occupation", "zip",
                                                  "year", "genres"])
    min_count: int = 1
    split: list = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 2024
    x_dtype: str = "int64"
    keep_time: bool = True  # carry the rating's timestamp (for time-restricted retrieval)


@register_dataset("movielens_100k", task="ctr", config=MovieLensCTRConfig)
def build(cfg: MovieLensCTRConfig, paths: DataPaths) -> CTRDataset:
    fields = parse_fields(cfg.fields, "dataset movielens_100k")
    bad = [f.name for f in fields if f.column not in AVAILABLE]
    if bad:
        raise ConfigError(f"dataset movielens_100k: unknown field(s) {bad}; available: {list(AVAILABLE)}")
    root = resolve(paths, cfg.dir)
    files = {k: root / k for k in ("u.data", "u.user", "u.item")}
    opts = EncodeOptions(int(cfg.min_count), "floor", [float(s) for s in cfg.split], int(cfg.seed), cfg.x_dtype)

    def prepare() -> Prepared:
        t_data = open_table(files["u.data"], required=[], separator="\t", header=False,
                            columns=["user", "item", "rating", "timestamp"], paths=paths)
        t_user = open_table(files["u.user"], required=[], separator="|", header=False,
                            columns=["user", "age", "gender", "occupation", "zip_code"], paths=paths)
        t_item = open_table(files["u.item"], required=[], separator="|", header=False,
                            columns=["item", "title", "release", "video_release", "url", *GENRES],
                            paths=paths, utf8=False)
        ratings = t_data.scan()
        int_bad = lambda c: pl.col(c).str.strip_chars().cast(pl.Int64, strict=False).is_null()  # noqa: E731
        check_values(t_data, ratings, {
            "user": (int_bad("user"), "an integer user id"), "item": (int_bad("item"), "an integer item id"),
            "rating": (~pl.col("rating").str.strip_chars().is_in(["1", "2", "3", "4", "5"]), "a rating 1..5"),
            "timestamp": (int_bad("timestamp"), "a unix timestamp")})
        users = t_user.scan()
        check_values(t_user, users, {"user": (int_bad("user"), "an integer user id")})
        items = t_item.scan()
        check_values(t_item, items, {"item": (int_bad("item"), "an integer item id")})
        ts = pl.from_epoch(pl.col("timestamp").cast(pl.Int64), time_unit="s")
        age = pl.col("age").cast(pl.Int64, strict=False)
        users = users.select(
            pl.col("user").str.strip_chars(),
            # the MovieLens-1M age groups: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+
            pl.when(age < 18).then(pl.lit("1")).when(age < 25).then(pl.lit("18")).when(age < 35).then(pl.lit("25"))
            .when(age < 45).then(pl.lit("35")).when(age < 50).then(pl.lit("45")).when(age < 56).then(pl.lit("50"))
            .when(age.is_not_null()).then(pl.lit("56")).alias("age"),
            pl.col("gender"), pl.col("occupation"), pl.col("zip_code").str.slice(0, 3).alias("zip"))
        genre_list = pl.concat_list([pl.when(pl.col(g) == "1").then(pl.lit(g)) for g in GENRES]).list.drop_nulls()
        items = items.select(
            pl.col("item").str.strip_chars(),
            pl.col("release").str.slice(-4, 4).alias("year"),
            genre_list.list.join("|").alias("genres"))
        lf = (ratings.with_row_index(ROW)
              .with_columns(pl.col("user").str.strip_chars(), pl.col("item").str.strip_chars(),
                            ts.dt.hour().cast(pl.String).alias("hour"),
                            ts.dt.weekday().cast(pl.String).alias("weekday"),
                            (pl.col("rating").cast(pl.Int64) >= cfg.threshold).cast(pl.Float32).alias("label"))
              .join(users, on="user", how="left", maintain_order="left")
              .join(items, on="item", how="left", maintain_order="left"))
        lf = hash_split(lf, opts.split, opts.seed)
        body = [pl.col("label"), *tokens(fields, opts)]
        if cfg.keep_time:
            body.append(pl.col("timestamp").str.strip_chars().cast(pl.Int64).alias(TIME))
        return Prepared(lf.select(*body, SPLIT), list(files.values()))

    return build_ctr("movielens_100k", cfg, paths, fields, opts, list(files.values()), prepare)
