"""`kdrec report` on bad input: one `kdrec error:` line naming the path, exit code 2, no traceback;
a metrics.json without valid/test metrics is never a row (issue 11)."""

import json

import pytest


def _fails_naming(cli, path, *args):
    proc = cli("report", *args, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert out.count("kdrec error:") == 1 and str(path) in " ".join(out.split()), out
    return out


def test_report_on_a_missing_folder(cli, tmp_path):
    missing = tmp_path / "nope"
    assert "does not exist" in _fails_naming(cli, missing, str(missing))


def test_report_on_an_empty_folder(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no metrics.json" in _fails_naming(cli, empty, str(empty))


@pytest.mark.parametrize("content, says", [
    ('{"valid": {"auc": 0.7}, "test": ', "not valid JSON"),       # a truncated file
    ("{}", "holds no valid/test metrics"),                           # an empty object is no run
    ('{"valid": {"auc": 0.7}, "test": {}}', "holds no valid/test metrics"),
    ("[1, 2]", "not a JSON object"),
])
def test_report_on_a_bad_metrics_file(cli, tmp_path, content, says):
    run = tmp_path / "sweep" / "0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(content)
    out = _fails_naming(cli, run / "metrics.json", str(tmp_path / "sweep"))
    assert says in out
    assert not (tmp_path / "sweep" / "summary.md").exists()


def test_report_still_reads_a_good_run_beside_nothing_else(cli, tmp_path):
    run = tmp_path / "sweep" / "0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(
        {"valid": {"auc": 0.7, "logloss": 0.5}, "test": {"auc": 0.69, "logloss": 0.51}, "params": 3,
         "model": "fm", "distiller": "none", "dataset": "synthetic", "seed": 1}))
    proc = cli("report", str(tmp_path / "sweep"))
    assert "0.6900" in proc.stdout and (tmp_path / "sweep" / "summary.md").is_file()
