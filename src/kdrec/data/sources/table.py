"""Delimited-text and parquet tables described entirely by their config: Frappe_x1, Criteo and any
user table (``dataset=csv`` / ``dataset=parquet``) are instances of this one source."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import polars as pl

from kdrec.data.encode import (EncodeOptions, FieldSpec, Prepared, build_ctr, check_file_keys, open_parquet,
                               open_table, parse_fields, resolve, table_frames)
from kdrec.data.registry import DataPaths, register_dataset
from kdrec.data.spec import CTRDataset
from kdrec.errors import ConfigError


@dataclass
class TableConfig:
    # split -> file, relative to paths.data_root (KDREC_DATA_DIR) unless absolute:
    # {train, valid, test}, or {all} to split by `split` with `seed`. dataset=csv/parquet leave it
    # null in their yaml so that either mapping is a plain override (a mapping there would merge)
    files: dict | None = None
    fields: list = field(default_factory=list)  # column name, or {name, kind, min_count, source}
    label: str = "label"
    columns: list | None = None  # column names when the file has no header line
    format: str = "auto"  # auto (by suffix) | csv | parquet
    separator: str = "auto"  # one character; auto: tab if the first line has one, else comma
    header: Any = "auto"  # true | false | auto (a header iff the first token is columns[0])
    # RFC 4180 quotes ("a, b" is one field; "" a quote inside). dataset=csv turns it on; the
    # built-in tables (Frappe, Criteo, Avazu) hold no quotes and keep their cache signature
    quoted: bool = False
    min_count: int = 1  # values seen fewer times in train map to the OOV id 0
    numeric_transform: str = "log_square"  # numeric fields: log_square (floor(ln(x)^2) if x > 2) | floor
    split: list = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 2024
    x_dtype: str = "int64"  # in-memory ids: int64, or int32 for large data


def options(cfg: TableConfig) -> EncodeOptions:
    return EncodeOptions(int(cfg.min_count), cfg.numeric_transform, [float(s) for s in cfg.split],
                         int(cfg.seed), cfg.x_dtype)


def build_table(name: str, cfg: TableConfig, paths: DataPaths,
                derive: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None,
                derived: tuple[str, ...] = (), extra_checks: dict | None = None) -> CTRDataset:
    """``derive`` adds columns (named in ``derived``) computed from raw ones before encoding."""
    where = f"dataset {name}"
    fields = parse_fields(cfg.fields, where)
    if not cfg.files:
        raise ConfigError(f"{where}: set the input file(s): 'dataset.files={{all: my.csv}}' (split by "
                          "`split`) or 'dataset.files={train: a.csv, valid: b.csv, test: c.csv}'")
    check_file_keys(cfg.files, where)
    files = {k: resolve(paths, str(v)) for k, v in cfg.files.items()}
    opts = options(cfg)
    required = [cfg.label, *dict.fromkeys(f.column for f in fields if f.column not in derived),
                *(extra_checks or {})]

    def fmt(p: Path) -> str:
        f = cfg.format
        if f == "auto":
            f = "parquet" if p.suffix == ".parquet" else "csv"
        if f not in ("csv", "parquet"):
            raise ConfigError(f"{where}: format must be auto, csv or parquet, not {cfg.format!r}")
        return f

    def prepare() -> Prepared:
        tables = {}
        for k, p in files.items():
            if fmt(p) == "parquet":
                tables[k] = open_parquet(p, required=required, paths=paths)
            else:
                tables[k] = open_table(p, required=required, separator=cfg.separator, header=cfg.header,
                                       columns=cfg.columns, quoted=cfg.quoted, paths=paths)
        return table_frames(tables, fields, cfg.label, opts, cfg.quoted, derive, extra_checks=extra_checks)

    return build_ctr(name, cfg, paths, fields, opts, list(files.values()), prepare)


@register_dataset("frappe_x1", task="ctr", config=TableConfig)
def build_frappe(cfg: TableConfig, paths: DataPaths) -> CTRDataset:
    return build_table("frappe_x1", cfg, paths)


@register_dataset("criteo", task="ctr", config=TableConfig)
def build_criteo(cfg: TableConfig, paths: DataPaths) -> CTRDataset:
    return build_table("criteo", cfg, paths)


@register_dataset("csv", task="ctr", config=TableConfig)
def build_csv(cfg: TableConfig, paths: DataPaths) -> CTRDataset:
    return build_table("csv", cfg, paths)


@register_dataset("parquet", task="ctr", config=TableConfig)
def build_parquet(cfg: TableConfig, paths: DataPaths) -> CTRDataset:
    return build_table("parquet", cfg, paths)


__all__ = ["TableConfig", "build_table", "FieldSpec"]
