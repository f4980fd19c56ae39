"""A table's yaml, checked before any work: rows (an id, a label, overrides, the stage that runs
them), optional groups the rows are repeated for (a preset, a dataset), seeds, columns, the row
the ratios refer to (``teacher``) and the row paired t-tests compare against (``baseline``).

    seeds: [1, 2, 3]
    overrides: [trainer.precision=bf16]          # every row
    groups:                                      # optional: rows repeated per group
      - {id: crossnet, label: CrossNet -> DAGFM, overrides: [experiment=frappe_crossnet_dagfm]}
    rows:
      - {id: teacher, label: teacher, stage: pretrain-teacher}
      - {id: alone, label: DAGFM alone, overrides: [distiller=none]}
      - {id: kd_dagfm, label: KD-DAGFM, overrides: ["experiment={group}"], only: [crossnet]}
    teacher: teacher
    baseline: alone
    columns: [test:auc, delta:auc, ratio:flops, ttest:auc]
    orderings:                                   # optional: a paper's "A beats B", checked per group
      - {better: kd_dagfm, worse: alone, source: KD-DAGFM paper}

``{group}`` and a group's ``vars`` are substituted in a row's overrides and label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kdrec.errors import ConfigError
from kdrec.schema import build_dataclass, ge, one_of

STAGES = ("distill", "pretrain-teacher")
# column kinds: "kind" or "kind:argument" (see COLUMN_HELP)
COLUMN_HELP = {
    "test": "test:<metric>: mean ± std over seeds",
    "valid": "valid:<metric>: mean ± std over seeds",
    "delta": "delta:<metric>: mean test metric minus the teacher row's",
    "share": "share:<metric>: mean test metric as a share of the teacher row's",
    "ttest": "ttest:<metric>: paired t-test over seeds against the baseline row (mean diff, p)",
    "flops": "flops: per-sample FLOPs",
    "params": "params: parameters",
    "latency": "latency:<b1|b4096|sample|all_users|...>: measured latency (ms; sample: µs/sample at batch 4096)",
    "ratio": "ratio:<flops|params|dense_params|latency_b1|latency_b4096|...>: row / teacher row",
    "claim": "claim: the table's claim (metric within max_drop of the teacher at <= max_flops_ratio)",
    "seconds": "seconds: mean seconds of a job (wall, or training seconds summed over resumed runs where larger)",
}
NEEDS_ARG = {"test", "valid", "delta", "share", "ttest", "latency", "ratio"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class RowConfig:
    id: str
    label: str = ""
    stage: str = field(default="distill", metadata=one_of(*STAGES))
    overrides: list[str] = field(default_factory=list)
    only: list[str] | None = None  # group ids this row is run for (default: every group)
    teacher: str | None = None  # row the ratios refer to (default: the table's)
    baseline: str | None = None  # row the t-test compares against (default: the table's)


@dataclass
class GroupConfig:
    id: str
    label: str = ""
    overrides: list[str] = field(default_factory=list)
    vars: dict = field(default_factory=dict)


@dataclass
class ClaimConfig:
    metric: str
    max_drop: float = field(default=0.0, metadata=ge(0))
    max_flops_ratio: float = field(default=1.0, metadata=ge(0))
    text: str = ""


@dataclass
class OrderingConfig:
    """A paper's claim that row ``better`` beats row ``worse`` (row ids, in every group that has
    both, or the groups in ``only``), checked by a paired t-test over seeds on ``metric`` (default:
    the metric of the table's first ``ttest:`` column, else of its first ``test:`` column)."""

    better: str
    worse: str
    source: str = ""  # whose claim: "DE-RRD paper"
    metric: str | None = None
    text: str = ""  # how the ordering reads (default: "<better label> > <worse label>")
    only: list[str] | None = None


@dataclass
class TableConfig:
    rows: list
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3], metadata=ge(0))
    title: str = ""
    description: str = ""
    overrides: list[str] = field(default_factory=list)
    groups: list | None = None
    teacher: str | None = None
    baseline: str | None = None
    columns: list[str] = field(default_factory=lambda: ["test:auc", "flops"])
    claim: dict | None = None
    orderings: list = field(default_factory=list)
    latency_threads: int = field(default=1, metadata=ge(1))
    notes: str = ""
    # copy each teacher a teacher row trains into paths.teacher_store, to be committed with the
    # results: for teachers that take an hour or more (a table resumed elsewhere copies, not trains)
    store_teachers: bool = False


@dataclass(frozen=True)
class Row:
    """One row of one group, its templates filled in."""

    id: str  # unique in the table: "<group>/<row>" or "<row>"
    row: str
    group: str | None
    group_label: str
    label: str
    stage: str
    overrides: tuple[str, ...]  # the table's, the group's, then the row's
    teacher: str | None  # full id of the teacher row of this row's group
    baseline: str | None  # full id of the baseline row


@dataclass
class TableSpec:
    name: str
    path: Path
    cfg: TableConfig
    rows: list[Row]
    claim: ClaimConfig | None
    orderings: list[OrderingConfig] = field(default_factory=list)

    @property
    def groups(self) -> list[tuple[str | None, str]]:
        seen: dict[str | None, str] = {}
        for r in self.rows:
            seen.setdefault(r.group, r.group_label)
        return list(seen.items())


def table_dir() -> Path:
    from kdrec.config import config_dir

    return Path(config_dir()) / "table"


def table_names() -> list[str]:
    return sorted(p.stem for p in table_dir().glob("*.yaml"))


def find_table(name: str) -> Path:
    """``name`` of ``conf/table/<name>.yaml``, or a path to a table yaml of one's own."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    path = table_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown table {name!r}: no {path}; tables: {table_names()} (or give a yaml path)")
    return path


def _fill(text: str, values: dict, where: str) -> str:
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot fill {text!r} ({exc!r}); known: {sorted(values)}") from None


def check_column(col: str, where: str) -> tuple[str, str]:
    kind, _, arg = str(col).partition(":")
    if kind not in COLUMN_HELP:
        raise ConfigError(f"{where}: unknown column {col!r}; columns are " + "; ".join(COLUMN_HELP.values()))
    if kind in NEEDS_ARG and not arg:
        raise ConfigError(f"{where}: column {col!r} needs an argument: {COLUMN_HELP[kind]}")
    return kind, arg


def load_table(name: str) -> TableSpec:
    path = find_table(name)
    where = f"table {path}"
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with rows, seeds and columns")
    cfg = build_dataclass(TableConfig, raw, where)
    if not cfg.seeds:
        raise ConfigError(f"{where}: seeds is empty")
    for c in cfg.columns:
        kind, _ = check_column(c, where)
        if kind == "claim" and cfg.claim is None:
            raise ConfigError(f"{where}: column 'claim' needs a claim: {{metric, max_drop, max_flops_ratio}}")
    claim = build_dataclass(ClaimConfig, cfg.claim, f"{where} claim") if cfg.claim is not None else None
    if not isinstance(cfg.rows, list) or not cfg.rows:
        raise ConfigError(f"{where}: rows must be a non-empty list")
    rows = [build_dataclass(RowConfig, r if isinstance(r, dict) else {"bad": r}, f"{where} rows[{i}]")
            for i, r in enumerate(cfg.rows)]
    groups = [build_dataclass(GroupConfig, g if isinstance(g, dict) else {"bad": g}, f"{where} groups[{i}]")
              for i, g in enumerate(cfg.groups or [])]
    for kind, items in (("row", rows), ("group", groups)):
        ids = [x.id for x in items]
        bad = [i for i in ids if not _ID.match(str(i))]
        if bad:
            raise ConfigError(f"{where}: {kind} id(s) {bad} must be letters, digits, '_', '-' or '.'")
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ConfigError(f"{where}: duplicate {kind} id(s) {dup}")
    row_ids = {r.id for r in rows}
    group_ids = {g.id for g in groups}
    for ref, what in [(cfg.teacher, "teacher"), (cfg.baseline, "baseline")] + \
            [(getattr(r, k), f"rows {r.id}: {k}") for r in rows for k in ("teacher", "baseline")]:
        if ref is not None and ref not in row_ids:
            raise ConfigError(f"{where}: {what} names no row: {ref!r}; rows: {sorted(row_ids)}")
    for r in rows:
        unknown = sorted(set(r.only or []) - group_ids)
        if unknown:
            raise ConfigError(f"{where}: rows {r.id}: only names unknown group(s) {unknown}; groups: {sorted(group_ids)}")
    expanded = []
    for g in groups or [None]:
        gid = g.id if g else None
        values = {"group": gid or "", **(g.vars if g else {})}
        present = {r.id for r in rows if g is None or r.only is None or gid in r.only}

        def full(rid: str | None) -> str | None:
            if rid is None or rid not in present:
                return None
            return f"{gid}/{rid}" if gid else rid

        for r in rows:
            if r.id not in present:
                continue
            w = f"{where} row {r.id}" + (f" (group {gid})" if gid else "")
            overrides = tuple(_fill(o, values, w) for o in (*cfg.overrides, *(g.overrides if g else []), *r.overrides))
            teacher = full(r.teacher or cfg.teacher)
            # a teacher row is compared with a baseline only when it names one itself
            baseline = full(r.baseline or (cfg.baseline if r.stage != "pretrain-teacher" else None))
            rid = f"{gid}/{r.id}" if gid else r.id
            expanded.append(Row(rid, r.id, gid, (g.label or g.id) if g else "", _fill(r.label or r.id, values, w),
                                r.stage, overrides, teacher if teacher != rid else None,
                                baseline if baseline != rid else None))
    orderings = [build_dataclass(OrderingConfig, o if isinstance(o, dict) else {"bad": o}, f"{where} orderings[{i}]")
                 for i, o in enumerate(cfg.orderings or [])]
    default_metric = next((check_column(c, where)[1] for kind in ("ttest", "test") for c in cfg.columns
                           if str(c).startswith(f"{kind}:")), None)
    for i, o in enumerate(orderings):
        w = f"{where} orderings[{i}]"
        for ref in (o.better, o.worse):
            if ref not in row_ids:
                raise ConfigError(f"{w}: names no row: {ref!r}; rows: {sorted(row_ids)}")
        unknown = sorted(set(o.only or []) - group_ids)
        if unknown:
            raise ConfigError(f"{w}: only names unknown group(s) {unknown}; groups: {sorted(group_ids)}")
        o.metric = o.metric or default_metric
        if o.metric is None:
            raise ConfigError(f"{w}: needs a metric (the table has no test: or ttest: column to take it from)")
    return TableSpec(path.stem, path, cfg, expanded, claim, orderings)
