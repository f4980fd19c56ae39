"""Top-K distillation table: teacher, student alone, student + each distiller; mean ± std over seeds.

    .venv/bin/python scripts/topk_table.py                       # MovieLens-100K, 3 seeds, all methods
    .venv/bin/python scripts/topk_table.py --experiment topk_gowalla_mf --seeds 1 --distillers none rrd

Each (distiller, seed) is one ``kdrec distill experiment=<preset> distiller=<d> seed=<s>`` run
whose run directory is fixed (``<outputs>/topk_table/<preset>/<d>/seed<s>``), so re-running the
command reuses finished runs and only trains what is missing. The teacher row comes from the
teacher metrics every distill run records; ``none`` is the student trained alone. Writes
``topk_table_<preset>.md`` and ``.csv`` (test metrics) beside the runs and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

ALL = ["none", "rd", "cd", "rrd", "ir_rrd", "de", "de_rrd", "phr", "ftd", "htd", "hetcomp"]
METRICS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "recall@50", "ndcg@50"]


def run_one(exe: str, preset: str, distiller: str, seed: int, rdir: Path, extra: list[str], env) -> dict | None:
    m = rdir / "metrics.json"
    if m.is_file():
        return json.loads(m.read_text())
    cmd = [exe, "distill", f"experiment={preset}", f"distiller={distiller}", f"seed={seed}",
           f"hydra.run.dir={rdir}", "device.threads=1", *extra]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"  failed ({p.returncode}):\n{(p.stdout + p.stderr)[-2000:]}", flush=True)
        return None
    out = json.loads(m.read_text())
    print(f"  {time.time() - t0:.0f}s  test ndcg@20 {out['test']['ndcg@20']:.4f} recall@20 "
          f"{out['test']['recall@20']:.4f}", flush=True)
    return out


def fmt(values: list[float]) -> str:
    s = pl.Series(values)
    return f"{s.mean():.4f} ± {s.std():.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="topk_ml100k")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--distillers", nargs="+", default=ALL)
    ap.add_argument("--outputs", default=os.environ.get("KDREC_OUTPUTS", "outputs"))
    ap.add_argument("--no-train", action="store_true", help="only tabulate finished runs")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    a = ap.parse_args()
    exe = str(Path(sys.executable).with_name("kdrec"))
    root = Path(a.outputs).resolve() / "topk_table" / a.experiment
    env = {**os.environ, "KDREC_OUTPUTS": str(Path(a.outputs).resolve())}
    rows = []
    for seed in a.seeds:  # seed-major: a partial table still has complete seeds
        for d in a.distillers:
            rdir = root / d / f"seed{seed}"
            if a.no_train and not (rdir / "metrics.json").is_file():
                continue
            m = run_one(exe, a.experiment, d, seed, rdir, a.overrides, env)
            if m is None:
                continue
            rows.append({"method": f"student + {d}" if d != "none" else "student alone", "seed": seed,
                         "dim": m["flops"]["student"].get("embed_dim"), "epochs": sum(p["epochs_run"] for p in m["phases"]),
                         **{k: m["test"][k] for k in METRICS}})
            if "teacher" in m and not any(r["method"] == "teacher" and r["seed"] == seed for r in rows):
                rows.append({"method": "teacher", "seed": seed, "dim": m["flops"]["teacher"].get("embed_dim"),
                             "epochs": None, **{k: m["teacher"]["test"][k] for k in METRICS}})
    if not rows:
        print("no finished runs")
        return
    df = pl.DataFrame(rows)
    df.write_csv(root / f"topk_table_{a.experiment}.csv")
    order = ["teacher", "student alone"] + [f"student + {d}" for d in a.distillers if d != "none"]
    lines = [f"| method | dim | seeds | {' | '.join(METRICS)} |", "|" + "---|" * (len(METRICS) + 3)]
    for name in order:
        sub = df.filter(pl.col("method") == name)
        if sub.height == 0:
            continue
        cells = [fmt(sub[k].to_list()) for k in METRICS]
        lines.append(f"| {name} | {sub['dim'][0]} | {sub.height} | {' | '.join(cells)} |")
    md = (f"Test metrics on `{a.experiment}` (mean ± std over seeds {sorted(set(df['seed'].to_list()))}; "
          f"full ranking, train/valid items excluded)\n\n" + "\n".join(lines) + "\n")
    (root / f"topk_table_{a.experiment}.md").write_text(md)
    print(md)
    print(f"written to {root}")


if __name__ == "__main__":
    main()
