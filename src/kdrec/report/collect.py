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


COSTS = ("flops_per_sample", "params", "dense_params", "latency_ms_b1", "latency_ms_b4096")


def _cost(d: dict | None) -> dict[str, float]:
    return {k: float(d[k]) for k in COSTS if d and k in d}


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
    rows, teachers = [], {}  # teacher dir -> its row (the dir's signature includes teacher_seed)
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
                                 {"params": m.get("params", 0)}),
                         "teacher_dir": str(m["teacher"].get("dir")) if m.get("teacher") else None})
            t = m.get("teacher")
            if t and str(t.get("dir")) in teachers:  # seen: a later job may have measured its latency
                row = teachers[str(t.get("dir"))]
                for k, v in _cost(flops.get("teacher")).items():
                    row.setdefault(k, v)
            elif t:
                tov = {k: v for k, v in ov.items() if k.startswith(("teacher", "dataset"))}
                tlabel = "teacher " + (_label(tov) or t["model"])
                row = {"role": "teacher", "config": tlabel, "baseline": None, "model": t["model"],
                       "distiller": "-", "dataset": m.get("dataset", "?"), "seed": tseed,
                       "job": str(t.get("dir")), **_flat("valid", t["valid"]), **_flat("test", t["test"]),
                       **_cost(flops.get("teacher") or {"params": t.get("params", 0)}), "teacher_dir": None}
                teachers[str(t.get("dir"))] = row
                rows.append(row)
    if not rows:
        raise KdrecError(f"report: no metrics.json found under {', '.join(map(str, dirs))}")
    return rows


def summarize(df: pl.DataFrame) -> pl.DataFrame:
    metrics = [c for c in df.columns if c.startswith(("valid_", "test_")) or c in COSTS]
    aggs = [pl.len().alias("n"), pl.col("job").unique().alias("_jobs")]
    if "teacher_dir" in df.columns:
        aggs.append(pl.col("teacher_dir").drop_nulls().unique().alias("_teacher_dirs"))
    for c in metrics:
        aggs += [pl.col(c).mean().alias(f"{c}_mean"), pl.col(c).std().alias(f"{c}_std")]
    # the baseline follows from the config (same overrides, distiller=none): a group key, so a
    # student trained alone sorts before the distilled ones
    keys = ["role", "config", "model", "distiller", "dataset"] + (["baseline"] if "baseline" in df.columns else [])
    out = df.group_by(keys, maintain_order=True).agg(aggs)
    if "baseline" not in out.columns:
        out = out.with_columns(pl.lit(None, dtype=pl.String).alias("baseline"))
    out = (out.with_columns(pl.col("baseline").is_not_null().alias("_distilled"))
           .sort(["dataset", "role", "_distilled", "config"], descending=[False, True, False, False])
           .drop("_distilled"))
    return with_cost_ratios(out).drop("_jobs", "_teacher_dirs", strict=False)


def with_cost_ratios(summary: pl.DataFrame) -> pl.DataFrame:
    """``<cost>_ratio`` = a student configuration's mean cost / its teacher's: the teacher whose
    checkpoint its jobs used, or for a student without one (``distiller=none``) the only teacher of
    its dataset in the report. Latencies may come from different benchmark runs of each."""
    costs = [c for c in COSTS if f"{c}_mean" in summary.columns]
    rows = list(summary.iter_rows(named=True))
    teachers = [r for r in rows if r["role"] == "teacher"]
    ratios = {f"{c}_ratio": [] for c in costs}
    for r in rows:
        teacher = None
        if r["role"] == "student":
            dirs = set(r.get("_teacher_dirs") or [])
            match = [t for t in teachers if dirs and dirs <= set(t["_jobs"])]
            same_data = [t for t in teachers if t["dataset"] == r["dataset"]]
            teacher = match[0] if len(match) == 1 else (same_data[0] if not dirs and len(same_data) == 1 else None)
        for c in costs:
            s, t = r[f"{c}_mean"], teacher and teacher[f"{c}_mean"]
            ratios[f"{c}_ratio"].append(s / t if s is not None and t else None)
    return summary.with_columns([pl.Series(k, v, dtype=pl.Float64) for k, v in ratios.items()])


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


RATIO_HEADERS = {"flops_per_sample_ratio": "FLOPs / teacher", "latency_ms_b1_ratio": "latency b1 / teacher",
                 "latency_ms_b4096_ratio": "latency b4096 / teacher"}
COST_HEADERS = {"flops_per_sample": "FLOPs/sample", "params": "params"}


def _pct(v) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:.1%}" if v >= 0.1 else f"{v:.2%}"


def _paired_cells(tests: pl.DataFrame | None, metric: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(dataset, config) -> (mean difference ± std over seed pairs, two-sided p) for ``metric``."""
    if tests is None or tests.is_empty():
        return {}
    out = {}
    for r in tests.filter(pl.col("metric") == metric).iter_rows(named=True):
        diff = f"{r['diff_mean']:+.4f}" + (f" ± {r['diff_std']:.4f}" if r["diff_std"] == r["diff_std"] else "")
        out[(r["dataset"], r["config"])] = (diff, "-" if r["p"] != r["p"] else f"{r['p']:.3g}")
    return out


def _short_labels(summary: pl.DataFrame) -> tuple[str, dict[str, str]]:
    """Overrides every student configuration shares, and each one's label without them."""
    configs = [c for c in summary.filter(pl.col("role") == "student")["config"].unique(maintain_order=True)]
    if len(configs) < 2:
        return "", {}
    shared = set.intersection(*(set(c.split(" ")) for c in configs))
    short = {c: " ".join(t for t in c.split(" ") if t not in shared) for c in configs}
    return " ".join(sorted(shared)), short


def render(summary: pl.DataFrame, tests: pl.DataFrame | None = None) -> tuple[Table, str]:
    """One table: headline test metrics (mean ± std), the paired test of each distilled student
    against its ``distiller=none`` twin on the first metric, cost and cost ratios to the teacher."""
    metrics = headline_metrics(summary)
    paired = _paired_cells(tests, metrics[0]) if metrics else {}
    ratios = [c for c in RATIO_HEADERS if c in summary.columns and summary[c].drop_nulls().len() > 0]
    costs = [c for c in ("flops_per_sample", "params") if f"{c}_mean" in summary.columns]
    header = (["role", "config", "n", *metrics]
              + ([f"Δ {metrics[0]} vs alone", "p (paired t)"] if paired else [])
              + [COST_HEADERS[c] for c in costs] + [RATIO_HEADERS[c] for c in ratios])
    shared, short = _short_labels(summary)
    table = Table(title="kdrec results (mean ± std over seeds)" + (f", every student: {shared}" if shared else ""))
    for h in header:
        table.add_column(h, justify="left" if h in ("role", "config") else "right")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in summary.iter_rows(named=True):
        cells = [r["role"], short.get(r["config"], r["config"]), str(r["n"])] + [_fmt(r[f"{c}_mean"], r[f"{c}_std"]) for c in metrics]
        if paired:
            cells += list(paired.get((r["dataset"], r["config"]), ("", "")))
        cells += [_fmt(r[f"{c}_mean"], r[f"{c}_std"], cost=True) for c in costs]
        cells += [_pct(r[c]) for c in ratios]
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
    from kdrec.report.significance import paired_tests, render_markdown

    tests = paired_tests(df, headline_metrics(summary)[:2])
    table, md = render(summary, tests)
    sig_md = render_markdown(tests)  # every tested metric with t and the spread, in summary.md
    if not tests.is_empty():
        atomic_write_text(out_dir / "significance.csv", tests.write_csv())
    atomic_write_text(out_dir / "summary.md", md + sig_md)
    console = Console(width=200)
    console.print(table)
    if not tests.is_empty():
        console.print(f"p: two-sided paired t-test over seeds against the same student with distiller=none "
                      f"(all tested metrics: {out_dir / 'summary.md'})")
    console.print(f"wrote {out_dir}/results.parquet, results.csv, summary.md")
    if "flops_per_sample" in df.columns and headline_metrics(summary):
        from kdrec.report.plot import pareto_plot

        pareto_plot(summary, out_dir / "pareto.png")
        console.print(f"Pareto plot: {(out_dir / 'pareto.png').resolve()}", soft_wrap=True)
    return summary
