"""A table from its jobs' result files: per row the mean ± std over seeds of the chosen metrics,
per-sample cost, latency, ratios to the group's teacher row, a paired t-test against the baseline
row and the table's claim; rendered as markdown (one section per group), csv and a Pareto plot per
group (:func:`kdrec.report.plot.pareto_plot`)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from kdrec.artifacts import atomic_write_text
from kdrec.errors import KdrecError
from kdrec.report import orderings as paper_orderings
from kdrec.report.significance import paired_by_seed
from kdrec.table.results import job_seconds
from kdrec.table.spec import Row, TableSpec, check_column

COST_KEYS = ("flops_per_sample", "params", "dense_params", "embedding_params")


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _std(xs: list[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) > 1 else None


def job_record(row: Row, result: dict) -> dict:
    """The numbers of one finished job, flat."""
    role = "teacher" if row.stage == "pretrain-teacher" else "student"
    m = result.get("metrics") or {}
    rec = {"row": row.id, "group": row.group, "label": row.label, "role": role, "seed": int(result["seed"]),
           "model": result.get("model"), "seconds": job_seconds(result)}
    for split in ("valid", "test"):
        for k, v in (m.get(split) or {}).items():
            if isinstance(v, (int, float)):
                rec[f"{split}_{k}"] = float(v)
    cost = (result.get("flops") or {}).get(role) or {}
    for k in COST_KEYS:
        if k in cost:
            rec[k] = float(cost[k])
    rec.setdefault("params", float(m["params"]) if isinstance(m.get("params"), (int, float)) else None)
    lat = result.get("latency") or {}
    for k, v in (lat.get(role) or {}).items():
        rec[k] = float(v)
    for k, v in (lat.get("teacher") or {}).items() if role == "student" else ():
        rec[f"teacher_{k}"] = float(v)  # measured in the same process as the student's
    if lat.get("loadavg"):
        rec["loadavg_1m"] = float(lat["loadavg"][0])
    t = result.get("teacher") or {}
    for k, v in (t.get("test") or {}).items():
        if isinstance(v, (int, float)):
            rec[f"teacher_test_{k}"] = float(v)
    tcost = (result.get("flops") or {}).get("teacher") or {}
    for k in COST_KEYS:
        if k in tcost and role == "student":
            rec[f"teacher_{k}"] = float(tcost[k])
    return rec


@dataclass
class RowSummary:
    row: Row
    n: int
    records: list[dict]
    values: dict = field(default_factory=dict)  # column key -> number (csv)
    cells: dict = field(default_factory=dict)  # column spec -> text (markdown)

    def mean(self, key: str) -> float | None:
        return _mean([r[key] for r in self.records if r.get(key) is not None])

    def std(self, key: str) -> float | None:
        return _std([r[key] for r in self.records if r.get(key) is not None])

    def by_seed(self, key: str) -> dict[int, float]:
        return {r["seed"]: r[key] for r in self.records if r.get(key) is not None}


def _cost(s: RowSummary, key: str, group: list[RowSummary]) -> float | None:
    """A row's per-sample cost or latency; a teacher row without its own measurement takes what
    the distill rows of its group recorded for the same teacher."""
    v = s.mean(key)
    if v is None and s.row.stage == "pretrain-teacher":
        v = _mean([r[f"teacher_{key}"] for o in group for r in o.records if r.get(f"teacher_{key}") is not None])
    return v


def _cost_key(arg: str) -> str:
    return {"flops": "flops_per_sample"}.get(arg, arg.replace("latency_", "latency_ms_") if arg.startswith("latency_") else arg)


def _latency_key(arg: str) -> str:
    return "latency_ms_b4096" if arg == "sample" else f"latency_ms_{arg}"


def _f(v: float | None, spec: str) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def fill(spec: TableSpec, summaries: list[RowSummary]) -> None:
    """Compute every column of every row (values for the csv, cells for the markdown)."""
    by_id = {s.row.id: s for s in summaries}
    for s in summaries:
        group = [o for o in summaries if o.row.group == s.row.group]
        teacher = by_id.get(s.row.teacher) if s.row.teacher else None
        base = by_id.get(s.row.baseline) if s.row.baseline else None
        v, c = s.values, s.cells
        for col in spec.cfg.columns:
            kind, arg = check_column(col, f"table {spec.name}")
            if kind in ("test", "valid"):
                key = f"{kind}_{arg}"
                v[f"{key}_mean"], v[f"{key}_std"] = s.mean(key), s.std(key)
                c[col] = _pm(v[f"{key}_mean"], v[f"{key}_std"])
            elif kind in ("delta", "share"):
                mine, theirs = s.mean(f"test_{arg}"), teacher.mean(f"test_{arg}") if teacher else None
                val = None if mine is None or theirs is None else (mine - theirs if kind == "delta" else
                                                                   (mine / theirs if theirs else None))
                v[f"{kind}_{arg}"] = val
                c[col] = _f(val, "+.4f" if kind == "delta" else ".1%")
            elif kind == "ttest":
                c[col] = ""
                if base is not None:
                    seeds, t = paired_by_seed(s.by_seed(f"test_{arg}"), base.by_seed(f"test_{arg}"))
                    if seeds:
                        v[f"ttest_{arg}_diff"], v[f"ttest_{arg}_p"], v[f"ttest_{arg}_n"] = t["diff_mean"], t["p"], t["n"]
                        c[col] = f"{t['diff_mean']:+.4f}" + (f" (p {t['p']:.3g})" if t["p"] == t["p"] else f" (n {t['n']})")
            elif kind == "flops":
                v["flops_per_sample"] = _cost(s, "flops_per_sample", group)
                c[col] = _f(v["flops_per_sample"], ",.0f")
            elif kind == "params":
                v["params"] = _cost(s, "params", group)
                c[col] = _f(v["params"], ",.0f")
            elif kind == "latency":
                key = _latency_key(arg)
                ms = _cost(s, key, group)
                val = None if ms is None else (ms / 4096 * 1e3 if arg == "sample" else ms)
                v[f"latency_{arg}"] = val
                c[col] = _f(val, ".2f" if arg == "sample" else ".3f")
            elif kind == "ratio":
                key = _cost_key(arg)
                val = None
                if teacher is not None and teacher is not s:
                    same = [r[key] / r[f"teacher_{key}"] for r in s.records
                            if key.startswith("latency") and r.get(key) and r.get(f"teacher_{key}")]
                    if same:  # both latencies from one benchmark process
                        val = _mean(same)
                    else:
                        mine, theirs = _cost(s, key, group), _cost(teacher, key, group)
                        val = mine / theirs if mine is not None and theirs else None
                v[f"ratio_{arg}"] = val
                c[col] = _f(val, ".1%")
            elif kind == "claim":
                cl = spec.claim
                val = None
                if teacher is not None and s.row.stage != "pretrain-teacher":
                    mine, theirs = s.mean(f"test_{cl.metric}"), teacher.mean(f"test_{cl.metric}")
                    fm, ft = _cost(s, "flops_per_sample", group), _cost(teacher, "flops_per_sample", group)
                    if None not in (mine, theirs, fm, ft) and ft:
                        val = mine >= theirs - cl.max_drop - 1e-12 and fm / ft <= cl.max_flops_ratio
                v["claim"] = val
                c[col] = "" if val is None else ("yes" if val else "no")
            elif kind == "seconds":
                v["seconds"] = s.mean("seconds")
                c[col] = _f(v["seconds"], ".0f")


@dataclass
class BuiltTable:
    markdown: str
    summary: pl.DataFrame
    runs: pl.DataFrame
    summaries: list[RowSummary]
    missing: list[str]
    orderings: list[dict] = field(default_factory=list)


def _header(spec: TableSpec, col: str) -> str:
    kind, arg = check_column(col, spec.name)
    return {"test": f"test {arg}", "valid": f"valid {arg}", "delta": f"Δ{arg} vs teacher",
            "share": f"{arg} / teacher", "ttest": f"{arg} vs baseline (paired t)", "flops": "FLOPs/sample",
            "params": "params", "latency": "latency b4096 (µs/sample)" if arg == "sample" else f"latency {arg} (ms)",
            "ratio": f"{arg.replace('_', ' ')} ratio", "claim": "claim holds", "seconds": "seconds/job"}[kind]


def build(spec: TableSpec, jobs: list, found: dict, seeds: list[int], command: str,
          results_dir: Path | str | None = None) -> BuiltTable:
    """``jobs``: the table's jobs (rows and seeds); ``found``: job -> its result (missing ones absent)."""
    rows: dict[str, Row] = {}
    for j in jobs:
        rows.setdefault(j.row.id, j.row)
    records = {rid: [] for rid in rows}
    missing = []
    for j in jobs:
        r = found.get(j)
        if r is None:
            missing.append(j.name)
        else:
            records[j.row.id].append(job_record(j.row, r))
    summaries = [RowSummary(row, len(records[rid]), records[rid]) for rid, row in rows.items()]
    fill(spec, summaries)
    checked = paper_orderings.check(spec, summaries)
    md = render(spec, summaries, seeds, missing, command, results_dir or f"results/{spec.name}", checked)
    summary = pl.DataFrame([{"group": s.row.group, "row": s.row.row, "label": s.row.label, "stage": s.row.stage,
                             "n": s.n, **s.values} for s in summaries], infer_schema_length=None)
    runs = pl.DataFrame([r for rid in rows for r in records[rid]], infer_schema_length=None)
    return BuiltTable(md, summary, runs, summaries, missing, checked)


def _teacher_mismatches(summaries: list[RowSummary]) -> list[str]:
    """Distill rows whose recorded teacher is not the teacher row's (same seed): another teacher."""
    by_id = {s.row.id: s for s in summaries}
    out = []
    for s in summaries:
        t = by_id.get(s.row.teacher) if s.row.teacher else None
        if t is None or t is s or s.row.stage == "pretrain-teacher":
            continue
        for key in [k for r in t.records for k in r if k.startswith("test_")][:1]:
            theirs = t.by_seed(key)
            mine = s.by_seed(f"teacher_{key}")
            bad = [k for k in mine if k in theirs and abs(mine[k] - theirs[k]) > 1e-9]
            if bad:
                out.append(f"{s.row.id} (seeds {bad})")
    return out


def render(spec: TableSpec, summaries: list[RowSummary], seeds: list[int], missing: list[str], command: str,
           results_dir: Path | str, checked: list[dict] | None = None) -> str:
    cols = spec.cfg.columns
    lines = []
    if spec.cfg.title:
        lines += [f"## {spec.cfg.title}", ""]
    if spec.cfg.description:
        lines += [spec.cfg.description.strip(), ""]
    groups = list(dict.fromkeys(s.row.group for s in summaries))
    for g in groups:
        part = [s for s in summaries if s.row.group == g]
        if g is not None:
            lines += [f"### {part[0].row.group_label}", ""]
        header = ["row", "seeds", *(_header(spec, c) for c in cols)]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for s in part:
            n = str(s.n) if s.n == len(seeds) else f"{s.n}/{len(seeds)}"
            lines.append("| " + " | ".join([s.row.label, n, *(s.cells.get(c, "") for c in cols)]) + " |")
        lines.append("")
    lines += paper_orderings.render(checked or [])
    partial = any(0 < s.n < len(seeds) for s in summaries)
    notes = [f"Mean ± std over seeds {', '.join(map(str, seeds))} (test split)"
             + (f"; a row with n/{len(seeds)} seeds averages the n seeds it has so far." if partial else ".")]
    if spec.claim is not None and "claim" in cols:
        cl = spec.claim
        notes.append(f"Claim{f' ({cl.text})' if cl.text else ''}: test {cl.metric} >= the teacher's - "
                     f"{cl.max_drop:g} at <= {cl.max_flops_ratio:.1%} of its FLOPs/sample.")
    loads = [r["loadavg_1m"] for s in summaries for r in s.records if r.get("loadavg_1m") is not None]
    if loads:
        notes.append(f"Latency: `kdrec benchmark-flops run=<job>` after all training, "
                     f"{spec.cfg.latency_threads} thread(s), one seed per row; load average (1 min) "
                     f"{min(loads):.2f}-{max(loads):.2f} when measured.")
    if missing:
        notes.append(f"Missing: {len(missing)} job(s): " + ", ".join(missing[:12]) + (" ..." if len(missing) > 12 else ""))
    mism = _teacher_mismatches(summaries)
    if mism:
        notes.append("Warning: these rows recorded another teacher than the teacher row's: " + ", ".join(mism))
    if spec.cfg.notes:
        notes.append(spec.cfg.notes.strip())
    notes.append(f"Generated from {str(results_dir).rstrip('/')}/ by `{command}`.")
    return "\n".join(lines + ["\n\n".join(notes)]).rstrip() + "\n"


def write(built: BuiltTable, spec: TableSpec, out: Path) -> list[Path]:
    """table.md, table.csv, runs.csv, orderings.csv and a Pareto plot per group into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "table.md", out / "table.csv"]
    atomic_write_text(out / "table.md", built.markdown)
    atomic_write_text(out / "table.csv", built.summary.write_csv())
    if built.runs.height:
        atomic_write_text(out / "runs.csv", built.runs.write_csv())
        written.append(out / "runs.csv")
    if built.orderings:
        rows = [{**r, "seeds": " ".join(map(str, r["seeds"]))} for r in built.orderings]
        atomic_write_text(out / "orderings.csv", pl.DataFrame(rows, infer_schema_length=None).write_csv())
        written.append(out / "orderings.csv")
    metric = next((check_column(c, spec.name)[1] for c in spec.cfg.columns if c.startswith("test:")), None)
    if metric is None:
        return written
    from kdrec.report.plot import pareto_plot

    for g in dict.fromkeys(s.row.group for s in built.summaries):
        part = [s for s in built.summaries if s.row.group == g and s.n]
        group = [s for s in built.summaries if s.row.group == g]
        pts = [{"role": "teacher" if s.row.stage == "pretrain-teacher" else "student", "config": s.row.label,
                "model": s.records[0].get("model") or "?", "n": s.n,
                f"test_{metric}_mean": s.mean(f"test_{metric}"), f"test_{metric}_std": s.std(f"test_{metric}"),
                "flops_per_sample_mean": _cost(s, "flops_per_sample", group),
                "latency_ms_b4096_mean": _cost(s, "latency_ms_b4096", group)} for s in part]
        if not any(p["flops_per_sample_mean"] for p in pts):
            continue
        path = out / (f"pareto_{g}.png" if g else "pareto.png")
        pareto_plot(pl.DataFrame(pts, infer_schema_length=None), path)
        written.append(path)
    return written


def markers(name: str) -> tuple[str, str]:
    return f"<!-- kdrec table {name} -->", f"<!-- /kdrec table {name} -->"


def embed(markdown: str, doc: Path, name: str) -> Path:
    """Put the table between its marker lines in ``doc`` (a docs page), replacing what was there,
    so that the page's numbers are the ones ``results/`` gives."""
    start, end = markers(name)
    try:
        text = doc.read_text(encoding="utf-8")
    except OSError as exc:
        raise KdrecError(f"table {name}: cannot read {doc}: {exc.strerror or exc}") from None
    lines = text.splitlines(keepends=True)
    where = [i for i, ln in enumerate(lines) if ln.strip() in (start, end)]
    if len(where) != 2 or lines[where[0]].strip() != start:
        raise KdrecError(f"table {name}: {doc} needs one line {start!r} and, after it, one line {end!r} "
                         f"around the place of the table")
    # one level below the page title: the table's own '## title' becomes '### title'
    body = "".join(("#" + ln if ln.startswith("#") else ln) for ln in markdown.splitlines(keepends=True))
    new = "".join(lines[:where[0] + 1]) + "\n" + body + "\n" + "".join(lines[where[1]:])
    if new != text:
        atomic_write_text(doc, new)
    return doc
