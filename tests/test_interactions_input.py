"""Issue 11's bad-input cases for `dataset=interactions`, through the CLI: an empty file, a
header-only file and a ragged row each end in one `kdrec error:` line naming the file (and the
line), exit code 2, no traceback; a UTF-8 BOM is skipped."""

from __future__ import annotations

import json

import pytest

from conftest import latest_run

BOM = b"\xef\xbb\xbf"


def data_cli(cli, raw, name):
    return cli("data", "dataset=interactions", f"paths.data_root={raw}", f"dataset.path={name}",
               "device.threads=1", check=False)


@pytest.mark.parametrize("case,content,needles", [
    ("empty", b"", ["log.csv: empty file (0 bytes)"]),
    ("header_only", b"user,item\n", ["log.csv: empty file: no data rows after the header line"]),
    ("ragged", b"user,item\nu1,i1\nu2,i2,extra\nu3,i3\n",
     ["log.csv: line 3: expected 2 columns separated by ',', found 3 field(s)"]),
    ("missing_column", b"user,product\nu1,i1\n",
     ["log.csv: line 1 (header): missing required column(s) ['item']"]),
])
def test_bad_interaction_files_are_one_clear_error(tmp_path, cli, case, content, needles):
    (tmp_path / "log.csv").write_bytes(content)
    proc = data_cli(cli, tmp_path, "log.csv")
    err = proc.stdout + proc.stderr
    assert proc.returncode == 2, err[-2000:]
    for n in needles:
        assert n in " ".join(err.split()), err[-2000:]  # rich may wrap the red line
    assert "Traceback" not in err and "polars" not in err.lower()


def test_bom_and_quotes_in_interactions(tmp_path, cli, outputs):
    rows = "".join(f'u{u},"item, {i}"\n' for u in range(6) for i in range(u, u + 10))
    (tmp_path / "log.csv").write_bytes(BOM + ("user,item\n" + rows).encode())
    proc = data_cli(cli, tmp_path, "log.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads((latest_run(outputs, "data") / "data_summary.json").read_text())
    assert sum(v["rows"] for v in s["splits"].values()) == 60
