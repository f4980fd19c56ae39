"""Encoding pipeline: vocabularies from train only, OOV / missing / min_count ids, numeric buckets,
hash split, cache hits and invalidation, and one clear error (with no cache left) per bad input."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch

from kdrec.data import encode
from kdrec.data.registry import DataPaths, load_dataset
from kdrec.data.spec import MISSING_ID, OOV_ID
from kdrec.errors import DataError
from kdrec.models.layers.embedding import FieldEmbedding

HEADER = "label,a,b,n\n"


def write(p: Path, text: str | bytes) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return p


def csv_cfg(**over):
    cfg = {"name": "csv", "files": {"train": "t/train.csv", "valid": "t/valid.csv", "test": "t/test.csv"},
           "fields": ["a", "b", {"name": "n", "kind": "numeric"}], "label": "label",
           "separator": ",", "header": True}
    cfg.update(over)
    return cfg


def paths_for(tmp_path: Path) -> DataPaths:
    return DataPaths(tmp_path / "raw", tmp_path / "cache")


def small_tables(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "t"
    # train: a = x (3 times), y (2 times), z (once), one missing; b = p/q; n numeric
    write(raw / "train.csv", HEADER + "1,x,p,0\n0,x,q,3\n1,x,p,10\n0,y,q,100\n1,y,,-1\n0,z,p,2.5\n0,,p,\n")
    write(raw / "valid.csv", HEADER + "1,w,p,1\n0,x,q,3\n")  # w never seen in train
    write(raw / "test.csv", HEADER + "1,y,r,20000\n0,,q,1\n")


def cache_dirs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "cache"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_vocab_from_train_only_with_oov_missing_and_order(tmp_path):
    small_tables(tmp_path)
    d = load_dataset(csv_cfg(), paths_for(tmp_path))
    fm = d.feature_map
    assert fm.field_names == ["a", "b", "n"]
    # a: x (3) -> 2, y (2) -> 3, z (1) -> 4; w only in valid -> OOV
    assert fm.vocab_sizes[0] == 2 + 3
    assert d["train"].x[:, 0].tolist() == [2, 2, 2, 3, 3, 4, MISSING_ID]
    assert d["valid"].x[:, 0].tolist() == [OOV_ID, 2]
    assert d["test"].x[:, 0].tolist() == [3, MISSING_ID]
    # b: p (4) -> 2, q (2) -> 3, missing -> 1; r unseen in train -> 0
    assert d["train"].x[:, 1].tolist() == [2, 3, 2, 3, MISSING_ID, 2, 2]
    assert d["test"].x[:, 1].tolist() == [OOV_ID, 3]
    # n (numeric): buckets 0, 1, 5, 21, -1, 0, missing -> "0" twice -> 2, then "-1", "1", "21", "5"
    assert d["train"].x[:, 2].tolist() == [2, 4, 6, 5, 3, 2, MISSING_ID]
    assert d["valid"].x[:, 2].tolist() == [4, 4]  # 1 -> "1"; 3 -> floor(ln(3)^2) = 1
    assert d["test"].x[:, 2].tolist() == [OOV_ID, 4]  # 20000 -> 98, never seen in train
    assert d["train"].y.tolist() == [1, 0, 1, 0, 1, 0, 0]
    assert d["train"].x.dtype == torch.int64
    assert d.signature and (d.source_dir / "feature_map.json").is_file()
    assert sorted(q.name for q in d.source_dir.iterdir() if q.name != ".complete") == ["feature_map.json", "test.parquet",
                                                              "train.parquet", "valid.parquet"]
    stats = fm.extra["stats"]
    assert stats["valid"]["oov_share"]["a"] == pytest.approx(0.5)
    assert stats["train"]["rows"] == 7


def test_min_count_maps_rare_values_to_oov(tmp_path):
    small_tables(tmp_path)
    d = load_dataset(csv_cfg(min_count=2), paths_for(tmp_path))
    # z seen once in train -> OOV everywhere; x, y kept
    assert d.feature_map.vocab_sizes[0] == 2 + 2
    assert d["train"].x[:, 0].tolist() == [2, 2, 2, 3, 3, OOV_ID, MISSING_ID]
    # per-field override beats the dataset default
    d2 = load_dataset(csv_cfg(min_count=1, fields=[{"name": "a", "min_count": 3}, "b"]), paths_for(tmp_path))
    assert d2["train"].x[:, 0].tolist() == [2, 2, 2, OOV_ID, OOV_ID, OOV_ID, MISSING_ID]


def test_numeric_log_square_buckets_match_reference():
    vals = ["0", "1", "2", "3", "10", "100", "-1", "2.5", "1.7", None, ""]

    def ref(v):  # AutoInt / FuxiCTR Criteo preprocessing
        if v is None or v == "":
            return None
        x = float(v)
        return int(math.floor(math.log(x) ** 2)) if x > 2 else int(x)

    def ref_ceil(v):  # DAGFM criteo_parse.py
        if v is None or v == "":
            return None
        x = float(v)
        return int(math.ceil(math.log(x) ** 2 + 1)) if x > 2 else int(x)

    df = pl.DataFrame({"n": vals})
    spec = [encode.FieldSpec("n", "numeric")]
    for transform, fn in (("log_square", ref), ("log_square_ceil", ref_ceil)):
        opts = encode.EncodeOptions(numeric_transform=transform)
        got = df.select(encode.tokens(spec, opts))["n"].to_list()
        assert got == [fn(v) for v in vals], transform


def test_hash_split_is_seeded_and_close_to_fractions():
    lf = pl.LazyFrame({"v": range(100_000)}).with_row_index(encode.ROW)
    a = encode.hash_split(lf, [0.8, 0.1, 0.1], 7).collect()[encode.SPLIT]
    b = encode.hash_split(lf, [0.8, 0.1, 0.1], 7).collect()[encode.SPLIT]
    c = encode.hash_split(lf, [0.8, 0.1, 0.1], 8).collect()[encode.SPLIT]
    assert a.equals(b) and not a.equals(c)
    share = a.value_counts(sort=True, normalize=True)
    fr = dict(zip(share[encode.SPLIT].to_list(), share["proportion"].to_list()))
    assert fr[0] == pytest.approx(0.8, abs=0.01) and fr[1] == pytest.approx(0.1, abs=0.01)


def test_cache_hit_then_invalidated_by_file_and_config(tmp_path, monkeypatch):
    small_tables(tmp_path)
    p = paths_for(tmp_path)
    d1 = load_dataset(csv_cfg(), p)
    calls = []
    real = encode._encode
    monkeypatch.setattr(encode, "_encode", lambda *a, **k: (calls.append(1), real(*a, **k)))
    d2 = load_dataset(csv_cfg(), p)
    assert calls == [] and d2.source_dir == d1.source_dir and torch.equal(d1["test"].x, d2["test"].x)
    d3 = load_dataset(csv_cfg(min_count=2), p)  # config change -> new signature
    assert calls == [1] and d3.signature != d1.signature
    f = tmp_path / "raw" / "t" / "test.csv"
    f.write_text(f.read_text() + "1,x,p,5\n")  # content change -> re-encoded
    d4 = load_dataset(csv_cfg(), p)
    assert calls == [1, 1] and d4.signature != d1.signature and len(d4["test"]) == 3
    assert not [q for q in (tmp_path / "cache").iterdir() if ".tmp-" in q.name]


def test_failed_encode_leaves_no_cache(tmp_path, monkeypatch):
    small_tables(tmp_path)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(encode, "_split_stats", boom)
    with pytest.raises(RuntimeError):
        load_dataset(csv_cfg(), paths_for(tmp_path))
    assert cache_dirs(tmp_path) == []


@pytest.mark.parametrize("case, train_text, needles", [
    ("too_many_columns", HEADER + "1,x,p,0\n0,x,q,3,9\n", ["train.csv", "line 3", "expected 4 columns", "found 5"]),
    ("too_few_columns", HEADER + "1,x,p,0\n0,x,q,3\n1,x\n", ["train.csv", "line 4", "found 2"]),
    ("blank_line", HEADER + "1,x,p,0\n\n0,x,q,3\n", ["train.csv", "line 3", "empty line"]),
    ("label_not_binary", HEADER + "1,x,p,0\n2,x,q,3\n", ["train.csv", "line 3", "column 'label'", "'2'", "0 or 1"]),
    ("label_missing", HEADER + "1,x,p,0\n,x,q,3\n", ["train.csv", "line 3", "column 'label'", "None"]),
    ("numeric_not_number", HEADER + "1,x,p,0\n0,x,q,abc\n", ["train.csv", "line 3", "column 'n'", "'abc'", "a number"]),
    ("missing_column", "label,a,n\n1,x,0\n", ["train.csv", "line 1", "missing required column", "'b'"]),
    ("empty_file", "", ["train.csv", "empty file"]),
    ("header_only", HEADER, ["train.csv", "empty file", "no data rows"]),
    ("non_utf8", (HEADER + "1,x,p,0\n0,caf").encode() + b"\xe9" + b",q,3\n",
     ["train.csv", "line 3", "byte 6", "0xe9", "UTF-8"]),
])
def test_bad_input_one_clear_error_no_cache(tmp_path, case, train_text, needles):
    small_tables(tmp_path)
    write(tmp_path / "raw" / "t" / "train.csv", train_text)
    with pytest.raises(DataError) as ei:
        load_dataset(csv_cfg(), paths_for(tmp_path))
    msg = str(ei.value)
    for n in needles:
        assert n in msg, f"{case}: {n!r} not in {msg!r}"
    assert cache_dirs(tmp_path) == []


def test_missing_file_names_path_and_env(tmp_path):
    with pytest.raises(DataError) as ei:
        load_dataset(csv_cfg(), paths_for(tmp_path))
    assert "t/train.csv" in str(ei.value) and "KDREC_DATA_DIR" in str(ei.value)


def test_non_utf8_found_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(encode, "_CHUNK", 64)  # many chunk boundaries, error far from the start
    small_tables(tmp_path)
    rows = "".join(f"{i % 2},x{i},p,{i}\n" for i in range(200))
    write(tmp_path / "raw" / "t" / "train.csv", (HEADER + rows).encode() + b"1,\xff,p,0\n")
    with pytest.raises(DataError, match=r"line 202, byte 3 .*0xff"):
        load_dataset(csv_cfg(), paths_for(tmp_path))
    write(tmp_path / "raw" / "t" / "train.csv", HEADER + rows + "1,x,p\n")
    with pytest.raises(DataError, match=r"line 202: expected 4 columns"):
        load_dataset(csv_cfg(), paths_for(tmp_path))


def test_single_table_split_and_parquet_source(tmp_path):
    n = 2000
    df = pl.DataFrame({"label": [i % 3 == 0 for i in range(n)], "a": [f"v{i % 17}" for i in range(n)],
                       "b": [i % 5 for i in range(n)]}).with_columns(pl.col("label").cast(pl.Int8))
    (tmp_path / "raw").mkdir()
    df.write_parquet(tmp_path / "raw" / "all.parquet")
    df.write_csv(tmp_path / "raw" / "all.csv")
    cfg = {"name": "parquet", "files": {"all": "all.parquet"}, "fields": ["a", "b"], "split": [0.6, 0.2, 0.2],
           "seed": 3, "x_dtype": "int32"}
    d = load_dataset(cfg, paths_for(tmp_path))
    sizes = [len(d[s]) for s in ("train", "valid", "test")]
    assert sum(sizes) == n and abs(sizes[0] - 0.6 * n) < 0.06 * n
    assert d["train"].x.dtype == torch.int32
    # the same table as CSV gives the same split and ids
    d_csv = load_dataset({**cfg, "name": "csv", "files": {"all": "all.csv"}}, paths_for(tmp_path))
    for s in ("train", "valid", "test"):
        assert torch.equal(d[s].x, d_csv[s].x) and torch.equal(d[s].y, d_csv[s].y)
    # int32 ids go through the shared embedding (int64 offsets) exactly like int64 ids
    emb = FieldEmbedding(d.feature_map.vocab_sizes, 4)
    assert torch.equal(emb(d["test"].x), emb(d["test"].x.long()))
    # row-group iteration for larger-than-memory splits yields the same rows
    xs = torch.cat([x for x, _ in encode.iter_parquet_batches(d.source_dir / "train.parquet",
                                                               d.feature_map.field_names, 100)])
    assert torch.equal(xs, d["train"].x)


def test_parquet_missing_column_and_label(tmp_path):
    (tmp_path / "raw").mkdir()
    pl.DataFrame({"label": [True, False, True], "a": ["x", "y", "x"]}).write_parquet(tmp_path / "raw" / "b.parquet")
    d = load_dataset({"name": "parquet", "files": {"all": "b.parquet"}, "fields": ["a"], "split": [1.0, 0.0, 0.0]},
                     paths_for(tmp_path))
    assert d["train"].y.tolist() == [1.0, 0.0, 1.0] and len(d["valid"]) == 0
    shutil.rmtree(tmp_path / "cache")
    pl.DataFrame({"label": [0, 1, 3], "a": ["x", "y", "z"]}).write_parquet(tmp_path / "raw" / "all.parquet")
    cfg = {"name": "parquet", "files": {"all": "all.parquet"}, "fields": ["a"]}
    with pytest.raises(DataError, match=r"all.parquet: row 3, column 'label': value '3' is not a label 0 or 1"):
        load_dataset(cfg, paths_for(tmp_path))
    with pytest.raises(DataError, match=r"missing required column\(s\) \['b'\]"):
        load_dataset({**cfg, "fields": ["a", "b"]}, paths_for(tmp_path))
    assert cache_dirs(tmp_path) == []
