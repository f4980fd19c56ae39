"""Any CSV as-is: RFC 4180 quoted fields (separators, doubled quotes and newlines inside quotes)
parse by default with exact line numbers in errors, a UTF-8 BOM is skipped, and `dataset.files`
takes either layout as a plain override (CLI)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from conftest import latest_run
from kdrec.data.encode import open_table
from kdrec.data.registry import DataPaths, load_dataset
from kdrec.errors import DataError

BOM = b"\xef\xbb\xbf"


def rows_text(n: int) -> str:
    """A headered table whose `range` field is quoted with commas inside (the issue's example),
    `name` holds doubled quotes and one value spans two lines."""
    ranges = ['"1,000,000 - 5,000,000"', '"5,000,000 - 10,000,000"', "small"]
    names = ['"say ""hi"""', '"two\nlines"', "plain"]
    out = ["label,user,range,name"]
    for i in range(n):
        out.append(f"{i % 2},u{i % 5},{ranges[i % 3]},{names[i % 3]}")
    return "\n".join(out) + "\n"


def cfg(**over) -> dict:
    c = {"name": "csv", "files": {"all": "t.csv"}, "fields": ["user", "range", "name"], "label": "label",
         "quoted": True}
    c.update(over)
    return c


def test_quoted_fields_parse_like_the_csv_module(tmp_path):
    text = rows_text(60)
    (tmp_path / "t.csv").write_bytes(BOM + text.encode())
    d = load_dataset(cfg(), DataPaths(tmp_path, tmp_path / "cache"))
    ref = list(csv.DictReader(io.StringIO(text)))
    assert sum(len(s) for s in d.splits.values()) == len(ref) == 60
    fm = d.feature_map
    assert fm.field_names == ["user", "range", "name"]
    train_vals = {"range": set(), "name": set()}
    # every value of the reference parse is one vocabulary entry (ids from 2); 60 rows of 3
    # values each land in train with the 8:1:1 hash split, so all three appear there
    for r in ref:
        train_vals["range"].add(r["range"])
        train_vals["name"].add(r["name"])
    assert "1,000,000 - 5,000,000" in train_vals["range"] and 'say "hi"' in train_vals["name"]
    assert fm.vocab_sizes == [2 + 5, 2 + 3, 2 + 3]
    labels = sorted(float(y) for s in d.splits.values() for y in s.y)
    assert labels == sorted(float(r["label"]) for r in ref)


def test_quoted_newline_keeps_line_numbers_in_errors(tmp_path):
    # record 3 (line 3) spans lines 3-4; the bad label of the next record is on line 5
    text = 'label,user,note\n1,a,x\n0,b,"two\nlines"\n7,c,y\n'
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError, match=r"t\.csv: line 5, column 'label': value '7' is not a label 0 or 1"):
        load_dataset(cfg(fields=["user", "note"]), DataPaths(tmp_path, tmp_path / "cache"))
    # a ragged record after the multi-line one is reported on its own line
    (tmp_path / "r.csv").write_text('label,user,note\n1,a,"x,\ny"\n0,b\n1,c,z\n')
    with pytest.raises(DataError, match=r"r\.csv: line 4: expected 3 columns separated by ',', found 2"):
        open_table(tmp_path / "r.csv", required=["label"], quoted=True)


def test_unclosed_quote_and_plain_quote_hint(tmp_path):
    (tmp_path / "u.csv").write_text('label,user\n1,a\n0,"b\n1,c\n')
    with pytest.raises(DataError, match=r"u\.csv: line 3: a quoted field is never closed"):
        open_table(tmp_path / "u.csv", required=["label"], quoted=True)
    # a quote used as plain text (inches) unbalances the quotes: the error says how to read it
    (tmp_path / "p.csv").write_text('label,screen,n\n1,5" wide,1\n0,7" wide,2\n')
    with pytest.raises(DataError, match="dataset.quoted=false"):
        open_table(tmp_path / "p.csv", required=["label"], quoted=True)
    t = open_table(tmp_path / "p.csv", required=["label"], quoted=False)
    assert t.columns == ["label", "screen", "n"]


def test_unquoted_mode_still_counts_fields_fast(tmp_path):
    (tmp_path / "t.csv").write_text('label,user,range\n1,a,"1,000"\n')
    with pytest.raises(DataError, match=r"line 2: expected 3 columns separated by ',', found 4"):
        open_table(tmp_path / "t.csv", required=["label"], quoted=False)


def test_structure_check_across_chunks(tmp_path, monkeypatch):
    from kdrec.data import encode

    monkeypatch.setattr(encode, "_CHUNK", 64)  # records and quotes straddle chunk borders
    text = rows_text(40)
    (tmp_path / "t.csv").write_text(text + '1,u1,"a,b",x,extra\n')
    lines = (text.count("\n")) + 1
    with pytest.raises(DataError, match=rf"line {lines}: expected 4 columns.*found 5"):
        open_table(tmp_path / "t.csv", required=["label"], quoted=True)
    (tmp_path / "ok.csv").write_text(text)
    t = open_table(tmp_path / "ok.csv", required=["label"], quoted=True)
    # rows 1, 4, 7, ... (i % 3 == 1) hold the two-line value: 13 of the 40 data rows
    assert len(t.multiline) == 13 and t.record_line(40) == 40 + 1 + 13


def test_bom_header_is_stripped(tmp_path):
    (tmp_path / "t.csv").write_bytes(BOM + b"label,user\n1,a\n0,b\n1,a\n0,c\n")
    t = open_table(tmp_path / "t.csv", required=["label", "user"])
    assert t.columns == ["label", "user"]


def write_split_files(raw: Path) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for name, n in (("a.csv", 80), ("b.csv", 10), ("c.csv", 10)):
        (raw / name).write_bytes(BOM + rows_text(n).encode())
    (raw / "d.csv").write_text(rows_text(100))


@pytest.mark.parametrize("files,rows", [("{train: a.csv, valid: b.csv, test: c.csv}", {"train": 80, "valid": 10, "test": 10}),
                                        ("{all: d.csv}", None)])
def test_files_override_either_layout_from_the_cli(tmp_path, cli, outputs, files, rows):
    raw = tmp_path / "raw"
    write_split_files(raw)
    cli("data", "dataset=csv", f"paths.data_root={raw}", f"dataset.files={files}",
        "dataset.fields=[user,range,name]", "device.threads=1")
    s = json.loads((latest_run(outputs, "data") / "data_summary.json").read_text())
    got = {k: v["rows"] for k, v in s["splits"].items()}
    assert sum(got.values()) == 100
    if rows is not None:
        assert got == rows


def test_csv_without_files_says_how_to_set_them(tmp_path, compose_cfg, caplog):
    from kdrec.stages.data import run

    with pytest.raises(SystemExit):
        run(compose_cfg("dataset=csv", "dataset.fields=[a]", f"paths.root={tmp_path}"))
    assert "'dataset.files={all: my.csv}'" in caplog.records[-1].getMessage()
