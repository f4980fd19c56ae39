#!/usr/bin/env python
"""KD-DAGFM results on Frappe_x1: run the grid (``run``) and rebuild the table (``table``).

    python scripts/kd_dagfm_table.py run   [--presets frappe_crossnet_dagfm ...] [--seeds 1 2 3]
    python scripts/kd_dagfm_table.py table [--root DIR] [--out DIR]

``run`` calls the kdrec CLI once per (preset, method, seed), seeds round-robin so that an
interrupted grid still holds complete seeds, and skips runs whose metrics.json exists. Start
``run`` several times to use several workers: each (preset, seed) group, whose jobs share one
teacher, is locked by the first worker to reach it (``<preset>/.lock-<seed>``). Runs land in
``$KDREC_OUTPUTS/kd_dagfm/<preset>/<method>/seed<k>/`` and one latency benchmark per preset in
``.../<preset>/flops/``. ``table`` reads only those metrics.json / flops.json files (polars),
prints mean ± std over seeds and writes ``kd_dagfm_results.{csv,md}``.

Methods: teacher (BCE) | alone (student, BCE only) | alone_xavier (the same with xavier embedding
init and no embedding L2) | kd (generic logit KD) | kd_dagfm (the paper's distill + fine-tune
phases) | kd_dagfm_nofinetune (phase 2 only). The paper's claim is
checked per preset: student test AUC >= teacher test AUC - 0.001 at <= 21.5% of its FLOPs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KDREC = str(REPO / ".venv" / "bin" / "kdrec")
METHODS = {
    "teacher": ["pretrain-teacher"],
    "alone": ["distill", "distiller=none"],
    # the student alone with the official code's embedding init and no embedding L2 (the BARS-style
    # 1e-4 init + the teacher's L2 keep DAGFM(+) near an LR-level plateau on Frappe)
    "alone_xavier": ["distill", "distiller=none", "+student.embed_init=xavier", "student.train.embedding_l2=0"],
    "kd": ["distill", "distiller=kd"],
    "kd_dagfm": ["distill"],
    "kd_dagfm_nofinetune": ["distill", "distiller.finetune=false"],
}
CLAIM_AUC_GAP, CLAIM_FLOPS = 0.001, 0.215
FRAPPE_PRESETS = ["frappe_xdeepfm_dagfm_plus", "frappe_dcnv2_dagfm_plus", "frappe_crossnet_dagfm",
                  "frappe_cin_dagfm", "frappe_autoint_dagfm", "frappe_autoint_plus_dagfm_plus"]


def root_dir(arg: str | None) -> Path:
    return Path(arg) if arg else Path(os.environ.get("KDREC_OUTPUTS", "outputs")) / "kd_dagfm"


def run(args) -> None:
    root = root_dir(args.root)
    common = [f"device.threads={args.threads}", "trainer.progress=false", *args.extra]
    jobs = []
    for preset in args.presets:
        jobs.append((preset, "flops", None, ["benchmark-flops", f"experiment={preset}"]))
        for seed in args.seeds:
            for method in args.methods:
                stage, *over = METHODS[method]
                jobs.append((preset, method, seed, [stage, f"experiment={preset}", f"seed={seed}", *over]))
    jobs.sort(key=lambda j: (j[2] or 0,))  # round-robin over seeds, flops first
    held: Path | None = None
    try:
        for preset, method, seed, cmd in jobs:
            out = root / preset / method / (f"seed{seed}" if seed is not None else "")
            done = out / ("flops.json" if method == "flops" else "metrics.json")
            if done.is_file():
                continue
            # several workers may share a grid: each (preset, seed) group belongs to the one worker
            # that locked it first (its jobs share one teacher, which must not be trained twice)
            lock = root / preset / f".lock-{seed if seed is not None else 'flops'}"
            if lock != held:
                if held is not None:
                    held.unlink(missing_ok=True)
                    held = None
                if not _take_lock(lock):
                    continue
                held = lock
            full = [KDREC, *cmd, *common, f"hydra.run.dir={out}"]
            print("+", " ".join(full[1:]), flush=True)
            rc = subprocess.run(full, cwd=REPO).returncode
            if rc != 0:
                print(f"  failed with exit code {rc}", flush=True)
    finally:
        if held is not None:
            held.unlink(missing_ok=True)


def _take_lock(lock: Path) -> bool:
    """Create ``lock`` holding our pid; False if a live process holds it (a dead holder's is taken)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(lock.read_text() or 0), 0)
                return False  # held by a running worker
            except (ProcessLookupError, ValueError):
                lock.unlink(missing_ok=True)  # stale: its worker died
            except PermissionError:
                return False
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def _rows(root: Path) -> list[dict]:
    rows = []
    for path in sorted(root.glob("*/*/seed*/metrics.json")):
        preset, method = path.parts[-4], path.parts[-3]
        m = json.loads(path.read_text())
        row = {"preset": preset, "method": method, "seed": int(path.parts[-2][4:]),
               "model": m.get("model"), "test_auc": m["test"]["auc"], "test_logloss": m["test"]["logloss"],
               "params": m.get("params"), "flops": None, "teacher_flops": None, "flops_ratio": None,
               "params_ratio": None, "dense_params_ratio": None}
        if method != "teacher":
            f = m.get("flops", {})
            row["flops"] = f.get("student", {}).get("flops_per_sample")
            r = f.get("ratios", {})
            row["flops_ratio"] = r.get("flops_per_sample_ratio")
            row["params_ratio"] = r.get("params_ratio")
            row["dense_params_ratio"] = r.get("dense_params_ratio")
            if "teacher" in f:
                row["teacher_flops"] = f["teacher"].get("flops_per_sample")
        rows.append(row)
    return rows


def table(args) -> None:
    import polars as pl

    root = root_dir(args.root)
    rows = _rows(root)
    if not rows:
        sys.exit(f"no metrics.json under {root}/<preset>/<method>/seed*/")
    df = pl.DataFrame(rows, infer_schema_length=None)
    agg = (df.group_by("preset", "method", maintain_order=True)
           .agg(pl.col("model").first(), pl.len().alias("seeds"),
                pl.col("test_auc").mean().alias("auc"), pl.col("test_auc").std().alias("auc_std"),
                pl.col("test_logloss").mean().alias("logloss"),
                pl.col("test_logloss").std().alias("logloss_std"),
                pl.col("flops").drop_nulls().first().alias("flops"),
                pl.col("teacher_flops").drop_nulls().first().alias("teacher_flops"),
                pl.col("flops_ratio").drop_nulls().first().alias("flops_ratio"),
                pl.col("params_ratio").drop_nulls().first().alias("params_ratio"),
                pl.col("dense_params_ratio").drop_nulls().first().alias("dense_params_ratio")))
    # `alone` runs have no teacher in their metrics: the same student architecture has the same cost
    for c in ("flops_ratio", "params_ratio", "dense_params_ratio"):
        agg = agg.with_columns(pl.col(c).fill_null(pl.col(c).max().over("preset", "model")))
    # latency ratios from the per-preset benchmark (fresh models: cost does not depend on weights)
    lat = []
    for path in sorted(root.glob("*/flops/flops.json")):
        f = json.loads(path.read_text())
        lat.append({"preset": path.parts[-3], "teacher_flops_bench": f["teacher"]["flops_per_sample"],
                    "latency_b1_ratio": f.get("ratios", {}).get("latency_ms_b1_ratio"),
                    "latency_b4096_ratio": f.get("ratios", {}).get("latency_ms_b4096_ratio"),
                    "teacher_ms_b4096": f["teacher"].get("latency_ms_b4096"),
                    "student_ms_b4096": f["student"].get("latency_ms_b4096")})
    if lat:
        agg = agg.join(pl.DataFrame(lat), on="preset", how="left")
    teacher = agg.filter(pl.col("method") == "teacher").select("preset", pl.col("auc").alias("teacher_auc"))
    agg = agg.join(teacher, on="preset", how="left").with_columns(
        (pl.col("auc") - pl.col("teacher_auc")).alias("auc_vs_teacher"))
    agg = agg.with_columns(pl.when(pl.col("method").is_in(["kd_dagfm", "kd_dagfm_nofinetune", "kd", "alone", "alone_xavier"]))
                           .then((pl.col("auc_vs_teacher") >= -CLAIM_AUC_GAP - 1e-9)
                                 & (pl.col("flops_ratio") <= CLAIM_FLOPS))
                           .otherwise(None).alias("claim_holds"))
    order = {m: i for i, m in enumerate(METHODS)}
    agg = agg.with_columns(pl.col("method").replace_strict(order, default=99).alias("_o")).sort("preset", "_o").drop("_o")

    def pm(mean, std):
        return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"

    def pct(v):
        return f"{v:.1%}" if v is not None else ""

    lines = ["| preset | method | model | seeds | test AUC | test logloss | ΔAUC vs teacher | FLOPs/sample "
             "| FLOPs ratio | params ratio (all / dense) | latency ratio b1 / b4096 | claim holds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in agg.iter_rows(named=True):
        is_t = r["method"] == "teacher"
        flops = r.get("teacher_flops_bench") if is_t else r["flops"]
        lat_s = "" if is_t or r.get("latency_b1_ratio") is None else \
            f"{pct(r['latency_b1_ratio'])} / {pct(r['latency_b4096_ratio'])}"
        gap = "" if is_t or r["auc_vs_teacher"] is None else f"{r['auc_vs_teacher']:+.4f}"
        lines.append(
            f"| {r['preset']} | {r['method']} | {r['model']} | {r['seeds']} | {pm(r['auc'], r['auc_std'])} "
            f"| {pm(r['logloss'], r['logloss_std'])} | {gap} "
            f"| {'' if flops is None else f'{flops:,.0f}'} | {'' if is_t else pct(r['flops_ratio'])} "
            f"| {'' if is_t else pct(r['params_ratio']) + ' / ' + pct(r['dense_params_ratio'])} | {lat_s} "
            f"| {'' if r['claim_holds'] is None else ('yes' if r['claim_holds'] else 'no')} |")
    md = "\n".join(lines)
    print(md)
    out = Path(args.out) if args.out else root
    out.mkdir(parents=True, exist_ok=True)
    agg.write_csv(out / "kd_dagfm_results.csv")
    (out / "kd_dagfm_results.md").write_text(md + "\n")
    df.write_csv(out / "kd_dagfm_runs.csv")
    print(f"\nwrote {out / 'kd_dagfm_results.md'} and .csv ({len(df)} runs)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the grid through the kdrec CLI (skips finished runs)")
    r.add_argument("--presets", nargs="+", default=FRAPPE_PRESETS)
    r.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    r.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--root")
    r.add_argument("extra", nargs="*", help="extra Hydra overrides for every run")
    t = sub.add_parser("table", help="rebuild the table from metrics.json / flops.json")
    t.add_argument("--root")
    t.add_argument("--out")
    a = p.parse_args()
    run(a) if a.cmd == "run" else table(a)


if __name__ == "__main__":
    main()
