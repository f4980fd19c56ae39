"""Dataset configs: Criteo (raw tab layout and the headered sample agree), Avazu's hour expansion,
MovieLens-100K CTR view, Frappe_x1, and the `kdrec data` stage."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch
from omegaconf import OmegaConf

from conftest import DATA_DIR, REPO, latest_run, require_data
from kdrec.data.registry import DataPaths, load_dataset
from kdrec.data.spec import MISSING_ID
from kdrec.data.sources.avazu import derive_hour

CONF = REPO / "conf" / "dataset"


def dataset_cfg(name: str, **over) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    cfg.update(over)
    return cfg


def test_criteo_raw_tab_layout_matches_headered_sample(tmp_path):
    sample = require_data("samples", "criteo_sample.txt")
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(sample, raw / "sample.csv")
    # the real Criteo layout: tab-separated, no header
    df = pl.read_csv(sample, infer_schema=False)
    (raw / "train.txt").write_text("\n".join("\t".join(v or "" for v in row) for row in df.rows()) + "\n")
    p = DataPaths(raw, tmp_path / "cache")
    a = load_dataset(dataset_cfg("criteo", files={"all": "sample.csv"}, min_count=2), p)
    b = load_dataset(dataset_cfg("criteo", files={"all": "train.txt"}, min_count=2), p)
    assert a.feature_map.num_fields == 39 and sum(len(a[s]) for s in ("train", "valid", "test")) == 200
    assert a.feature_map.vocab_sizes == b.feature_map.vocab_sizes
    for s in ("train", "valid", "test"):
        assert torch.equal(a[s].x, b[s].x) and torch.equal(a[s].y, b[s].y)
    assert a["train"].x.dtype == torch.int32
    # I1 is empty in the first row -> missing id; I3 = 260 -> floor(ln(260)^2) = 30 is a known bucket
    first = df.row(0, named=True)
    assert first["I1"] is None


def test_avazu_hour_expands_to_hour_of_day_and_weekday():
    lf = pl.LazyFrame({"hour": ["14102100", "14102623", "14103017"]})
    out = derive_hour(lf).collect()
    assert out["hour_of_day"].to_list() == ["0", "23", "17"]
    want = [str(dt.date(2014, 10, d).isoweekday()) for d in (21, 26, 30)]
    assert out["weekday"].to_list() == want == ["2", "7", "4"]


def test_avazu_sample_and_bad_hour(tmp_path):
    sample = require_data("samples", "avazu_sample.txt")
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(sample, raw / "a.csv")
    p = DataPaths(raw, tmp_path / "cache")
    d = load_dataset(dataset_cfg("avazu", files={"all": "a.csv"}, min_count=1), p)
    assert d.feature_map.field_names[:2] == ["hour_of_day", "weekday"] and "id" not in d.feature_map.field_names
    assert sum(len(d[s]) for s in ("train", "valid", "test")) == 100
    lines = sample.read_text().splitlines()
    cols = lines[3].split(",")
    cols[2] = "1410219"  # 7 digits
    lines[3] = ",".join(cols)
    (raw / "bad.csv").write_text("\n".join(lines) + "\n")
    from kdrec.errors import DataError

    with pytest.raises(DataError, match=r"bad.csv: line 4, column 'hour': value '1410219' is not an hour stamp"):
        load_dataset(dataset_cfg("avazu", files={"all": "bad.csv"}), p)


def test_movielens_100k_ctr_view(tmp_path):
    require_data("ml-100k", "u.data")
    d = load_dataset(dataset_cfg("movielens_100k"), DataPaths(DATA_DIR, tmp_path / "cache"))
    assert sum(len(d[s]) for s in ("train", "valid", "test")) == 100_000
    assert abs(len(d["train"]) - 80_000) < 1_000
    # label = rating >= 4: 55,375 of the 100,000 ratings
    pos = sum(float(d[s].y.sum()) for s in ("train", "valid", "test"))
    assert pos == 55_375
    fm = d.feature_map
    assert fm.field_names == ["user", "item", "age", "gender", "occupation", "zip", "year", "genres"]
    assert fm.vocab_sizes[fm.field_names.index("gender")] == 2 + 2
    assert fm.vocab_sizes[fm.field_names.index("user")] <= 2 + 943
    assert (d["train"].x[:, fm.field_names.index("genres")] != MISSING_ID).all()


def test_frappe_x1_real_split(tmp_path):
    require_data("frappe_x1", "train.csv")
    p = DataPaths(DATA_DIR, tmp_path / "cache")
    d = load_dataset(dataset_cfg("frappe_x1"), p)
    assert [len(d[s]) for s in ("train", "valid", "test")] == [202_027, 57_722, 28_860]
    assert int(d["train"].y.sum()) == 67_604
    fm = d.feature_map
    # 5,382 distinct ids overall; train holds all but a few, +2 reserved ids per field
    assert 5_300 < sum(fm.vocab_sizes) - 2 * fm.num_fields <= 5_382
    assert d.signature and d.signature in d.source_dir.name


def test_data_stage_prints_summary_and_reuses_cache(tmp_path, compose_cfg, monkeypatch, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "t.csv").write_text("y,u,i\n" + "".join(f"{i % 2},u{i % 7},i{i % 11}\n" for i in range(300)))
    monkeypatch.chdir(tmp_path)
    from kdrec.stages import data as stage

    cfg = compose_cfg("dataset=csv", f"paths.root={tmp_path / 'out'}", f"paths.data_root={raw}",
                      "dataset.files={all: t.csv}", "dataset.fields=[u,i]", "dataset.label=y")
    s1 = stage.run(cfg)
    assert sum(v["rows"] for v in s1["splits"].values()) == 300
    assert [f["vocab_size"] for f in s1["fields"]] == [2 + 7, 2 + 11]
    out = capsys.readouterr().out
    assert "positive rate" in out and "OOV train" in out and "csv" in out
    s2 = stage.run(cfg)
    assert s2["cache_dir"] == s1["cache_dir"]
    assert len(list((tmp_path / "out" / "runs" / "in_process").glob("*/data_summary.json"))) == 2


def test_data_cli_bad_file_is_one_red_line(tmp_path, cli):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "t.csv").write_text("y,u\n1,a\n7,b\n")
    proc = cli("data", "dataset=csv", f"paths.data_root={raw}", "dataset.files={all: t.csv}",
               "dataset.fields=[u]", "dataset.label=y", check=False)
    assert proc.returncode == 2
    assert "t.csv: line 3, column 'y': value '7' is not a label 0 or 1" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
