"""`kdrec report DIR...`: every ``metrics.json`` under the given run/sweep directories becomes rows
of one polars table (one row per job and role: the student, and its teacher once per teacher), then
groups by configuration (every swept key but the seeds) with mean ± std and count.

Writes ``results.parquet`` (one row per job and role), ``results.csv``, ``summary.md`` and
``pareto.png`` (test metric vs per-sample FLOPs) into the output directory, and, where a distilled
student has its ``distiller=none`` twin, a paired t-test over seeds (``significance.csv``, also
appended to ``summary.md``)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml
from rich.console import Console
from rich.table import Table

from kdrec.artifacts import atomic_write_bytes, atomic_write_text
from kdrec.errors import KdrecError

SEED_KEYS = {"seed", "teacher_seed"}
# keys that change where or how fast a job runs, not what it computes
IGNORED_PREFIXES = ("resume", "run", "trainer.progress", "device", "paths", "hydra")


def _overrides(job: Path) -> dict[str, str]:
    f = job / ".hydra" / "overrides.yaml"
    if not f.is_file():
        return {}
    out = {}
    for item in yaml.safe_load(f.read_text()) or []:
        key, _, value = str(item).lstrip("+~").partition("=")
        if not key.startswith(IGNORED_PREFIXES):
            out[key] = value
    return out


def _flat(prefix: str, d: dict) -> dict[str, float]:
    return {f"{prefix}_{k}": float(v) for k, v in d.items() if isinstance(v, (int, float))}


def _cost(d: dict | None) -> dict[str, float]:
    keys = ("flops_per_sample", "params", "dense_params", "latency_ms_b1", "latency_ms_b4096")
    return {k: float(d[k]) for k in keys if d and k in d}


def _label(ov: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(ov.items()))


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KdrecError(f"report: {path} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise KdrecError(f"report: {path} is not a JSON object")
    return obj


def _has_metrics(m: dict | None) -> bool:
    return isinstance(m, dict) and all(
        isinstance(m.get(split), dict) and m[split] and
        all(isinstance(v, (int, float)) for v in m[split].values()) for split in ("valid", "test"))


def read_metrics(path: Path) -> dict:
    """A run's metrics.json; one that is not JSON or holds no valid/test metrics is an error
    naming the file (a report must not count it as a run)."""
    m = _read_json(path)
    if not _has_metrics(m):
        raise KdrecError(f"report: {path} holds no valid/test metrics (expected {{\"valid\": {{...}}, "
                         "\"test\": {...}} as kdrec writes); remove it or the run's folder")
    if "teacher" in m and not _has_metrics(m["teacher"]):
        raise KdrecError(f"report: {path}: its \"teacher\" entry holds no valid/test metrics")
    return m


def collect_rows(dirs: list[Path]) -> list[dict]:
    rows, seen_teachers = [], set()
    for root in dirs:
        if not root.exists():
            raise KdrecError(f"report: {root} does not exist")
        if not root.is_dir():
            raise KdrecError(f"report: {root} is not a directory (give run or sweep directories)")
        for mfile in sorted(root.rglob("metrics.json")):
            job = mfile.parent
            if "teachers" in job.parts and not (job / ".hydra").is_dir():
                continue  # the teacher cache itself; teachers are reported through their runs
            m = read_metrics(mfile)
            ov = _overrides(job)
            seed = ov.pop("seed", str(m.get("seed", "")))
            tseed = ov.pop("teacher_seed", seed)
            flops = m.get("flops", {})
            fjson = job / "flops.json"
            if fjson.is_file():  # benchmark-flops measured latency too: prefer it
                flops = _read_json(fjson)
            is_teacher_run = "distiller" not in m and "teacher_dir" in m
            role = "teacher" if is_teacher_run else "student"
            label = _label(ov) or m.get("model", "?")
            baseline = None
            if role == "student" and ov.get("distiller", m.get("distiller", "none")) != "none":
                baseline = _label({**ov, "distiller": "none"})
            rows.append({"role": role, "config": label, "baseline": baseline, "model": m.get("model", "?"),
                         "distiller": m.get("distiller", "-"), "dataset": m.get("dataset", "?"),
                         "seed": seed, "job": str(job), **_flat("valid", m.get("valid", {})),
                         **_flat("test", m.get("test", {})),
                         **_cost(flops.get("student" if role == "student" else "teacher") or
                                 {"params": m.get("params", 0)})})
            t = m.get("teacher")
            if t and (t.get("dir"), tseed) not in seen_teachers:
                seen_teachers.add((t.get("dir"), tseed))
                tov = {k: v for k, v in ov.items() if k.startswith(("teacher", "dataset"))}
                tlabel = "teacher " + (_label(tov) or t["model"])
                rows.append({"role": "teacher", "config": tlabel, "baseline": None, "model": t["model"],
                             "distiller": "-", "dataset": m.get("dataset", "?"), "seed": tseed,
                             "job": str(t.get("dir")), **_flat("valid", t["valid"]),
                             **_flat("test", t["test"]),
                             **_cost(flops.get("teacher") or {"params": t.get("params", 0)})})
    if not rows:
        raise KdrecError(f"report: no metrics.json found under {', '.join(map(str, dirs))}")
    return rows


def summarize(df: pl.DataFrame) -> pl.DataFrame:
    metrics = [c for c in df.columns if c.startswith(("valid_", "test_")) or c in
               ("flops_per_sample", "params", "dense_params", "latency_ms_b1", "latency_ms_b4096")]
    aggs = [pl.len().alias("n")]
    for c in metrics:
        aggs += [pl.col(c).mean().alias(f"{c}_mean"), pl.col(c).std().alias(f"{c}_std")]
    return (df.group_by(["role", "config", "model", "distiller", "dataset"], maintain_order=True)
            .agg(aggs).sort(["dataset", "role", "config"], descending=[False, True, False]))


def _fmt(mean, std, digits=4, cost=False) -> str:
    if mean is None:
        return "-"
    if cost:
        return f"{mean:,.0f}" if abs(mean) >= 100 else f"{mean:.3g}"
    s = f"{mean:.{digits}f}"
    return s + (f" ± {std:.{digits}f}" if std is not None and std == std else "")


def headline_metrics(summary: pl.DataFrame) -> list[str]:
    names = [c[:-5] for c in summary.columns if c.endswith("_mean") and c.startswith("test_")]
    return names[:4]


def render(summary: pl.DataFrame) -> tuple[Table, str]:
    tests = headline_metrics(summary)
    cols = tests + [c for c in ("flops_per_sample", "params") if f"{c}_mean" in summary.columns]
    table = Table(title="kdrec results (mean ± std over seeds)")
    header = ["role", "config", "n", *cols]
    for h in header:
        table.add_column(h, justify="left" if h in ("role", "config") else "right")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in summary.iter_rows(named=True):
        cells = [r["role"], r["config"], str(r["n"])] + [
            _fmt(r[f"{c}_mean"], r[f"{c}_std"], cost=c not in tests) for c in cols]
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    return table, "\n".join(md) + "\n"


def main(dirs: list[str], out: str | None = None) -> pl.DataFrame:
    paths = [Path(d) for d in dirs]
    df = pl.DataFrame(collect_rows(paths))
    summary = summarize(df)
    out_dir = Path(out) if out else paths[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    df.write_parquet(buf)
    atomic_write_bytes(out_dir / "results.parquet", buf.getvalue())
    atomic_write_text(out_dir / "results.csv", df.write_csv())
    table, md = render(summary)
    from kdrec.report.significance import paired_tests, render_markdown

    tests = paired_tests(df, headline_metrics(summary)[:2])
    sig_md = render_markdown(tests)
    if not tests.is_empty():
        atomic_write_text(out_dir / "significance.csv", tests.write_csv())
    atomic_write_text(out_dir / "summary.md", md + sig_md)
    Console(width=160).print(table)
    if sig_md:
        Console(width=160).print(sig_md)
    if "flops_per_sample" in df.columns and headline_metrics(summary):
        from kdrec.report.plot import pareto_plot

        pareto_plot(summary, out_dir / "pareto.png")
    Console(width=160).print(f"wrote {out_dir}/results.parquet, results.csv, summary.md"
                             + (", pareto.png" if (out_dir / "pareto.png").exists() else ""))
    return summary
