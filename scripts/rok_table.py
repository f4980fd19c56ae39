"""Issue 6's table in one command: backbone alone vs backbone + ROK (instance-wise, feature-wise,
both) vs the RIM teacher, on Frappe_x1 and MovieLens-100K, with test AUC / logloss (mean ± std
over seeds), per-sample FLOPs and measured CPU latency (RIM's including its retrieval).

    KDREC_OUTPUTS=/tmp/rok-outputs .venv/bin/python scripts/rok_table.py
    .venv/bin/python scripts/rok_table.py --datasets frappe --backbones dnn --seeds 42 43 44

Every run is an ordinary ``kdrec distill experiment=<dataset>_rok_<backbone> distiller=<mode>``
in ``$KDREC_OUTPUTS/rok_table/<dataset>/<backbone>/<mode>/seed<seed>``; finished runs are reused,
so an interrupted table resumes where it stopped. The RIM teacher, its retrieval and the knowledge
base are cached by kdrec itself and shared by all backbones of a seed. Results:
``$KDREC_OUTPUTS/rok_table/rok_table.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KDREC = str(Path(sys.executable).with_name("kdrec"))
DATASETS = {"frappe": "frappe_x1", "ml100k": "movielens_100k"}
MODES = {"none": "alone", "rok_instance": "+ ROK instance-wise", "rok_feature": "+ ROK feature-wise",
         "rok": "+ ROK both"}


def outputs() -> Path:
    return Path(os.environ.get("KDREC_OUTPUTS", REPO / "outputs"))


def run_one(ds: str, bb: str, mode: str, seed: int, args) -> Path:
    rdir = outputs() / "rok_table" / ds / bb / mode / f"seed{seed}"
    if (rdir / "metrics.json").is_file():
        return rdir
    cmd = [KDREC, "distill", f"experiment={ds}_rok_{bb}", f"distiller={mode}", f"seed={seed}",
           f"device.threads={args.threads}", f"hydra.run.dir={rdir}",
           f"++student.train.epochs={args.student_epochs}", *args.override]
    print("$", " ".join(cmd[1:]), flush=True)
    t = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"run failed: {' '.join(cmd)}")
    print(f"  done in {time.time() - t:.0f}s", flush=True)
    return rdir


def profile_run(rdir: Path, teacher: bool, threads: int) -> dict:
    """Per-sample FLOPs and measured latency of a finished run's student (and teacher)."""
    import torch
    from omegaconf import OmegaConf

    from kdrec.config import train_config
    from kdrec.runs import load_models
    from kdrec.runtime import build_task, load_data, pick_device

    cfg = OmegaConf.load(rdir / ".hydra" / "config.yaml")
    cfg.paths.root = str(outputs())
    cfg.paths.cache, cfg.paths.teachers = f"{outputs()}/cache", f"{outputs()}/teachers"
    cfg.device.type, cfg.device.threads = "cpu", threads
    device = pick_device(cfg)
    torch.set_num_threads(threads)
    data = load_data(cfg)
    task = build_task(cfg, data, device, train_config(cfg, cfg.student).batch_size)
    out = {}
    for name, model in load_models(cfg, rdir, task, data).items():
        role = name.split(" ", 1)[0]
        if role == "teacher" and not teacher:
            continue
        out[role] = task.profile(model, latency=True)
    return out


def mean_std(xs: list[float]) -> str:
    if not xs:
        return "-"
    m = statistics.fmean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.4f} ± {s:.4f}" if len(xs) > 1 else f"{m:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--backbones", nargs="+", default=["dnn", "deepfm", "dcnv2"])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    ap.add_argument("--student-epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-profile", action="store_true", help="skip the latency/FLOPs measurements")
    ap.add_argument("--collect-only", action="store_true", help="tabulate finished runs, run nothing")
    ap.add_argument("override", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args()

    root = outputs() / "rok_table"
    results: dict = {}
    for ds in args.datasets:
        for seed in args.seeds:
            for bb in args.backbones:
                for mode in args.modes:
                    rdir = root / ds / bb / mode / f"seed{seed}"
                    if not args.collect_only:
                        run_one(ds, bb, mode, seed, args)
                    if (rdir / "metrics.json").is_file():
                        results.setdefault((ds, bb, mode), []).append(
                            json.loads((rdir / "metrics.json").read_text()))

    # cost: one profile per (dataset, backbone, mode) on its first finished seed; RIM once per dataset
    cost_path = root / "cost.json"
    cost = json.loads(cost_path.read_text()) if cost_path.is_file() else {}
    if not args.no_profile:
        for (ds, bb, mode), runs in results.items():
            key = f"{ds}/{bb}/{mode}"
            need_teacher = mode != "none" and f"{ds}/rim" not in cost
            if key in cost and not need_teacher:
                continue
            rdir = root / ds / bb / mode / f"seed{runs[0]['seed']}"
            print(f"profiling {rdir}", flush=True)
            prof = profile_run(rdir, need_teacher, args.threads)
            cost[key] = prof["student"]
            if "teacher" in prof:
                cost[f"{ds}/rim"] = prof["teacher"]
            cost_path.write_text(json.dumps(cost, indent=2) + "\n")

    lines, rows = [], []
    for ds in args.datasets:
        lines += [f"\n### {DATASETS[ds]}\n",
                  "| model | seeds | test AUC | test logloss | FLOPs/sample | latency b1 (ms) | "
                  "latency b4096 (µs/sample) | params |",
                  "|---|---|---|---|---|---|---|---|"]

        def row(label, metrics_list, c):
            auc = [m["test"]["auc"] for m in metrics_list]
            ll = [m["test"]["logloss"] for m in metrics_list]
            fl = f"{c['flops_per_sample']:,.0f}" if c else "-"
            l1 = f"{c['latency_ms_b1']:.3f}" if c and "latency_ms_b1" in c else "-"
            lb = f"{c['latency_ms_b4096'] / 4096 * 1e3:.2f}" if c and "latency_ms_b4096" in c else "-"
            pa = f"{c['params']:,}" if c else "-"
            lines.append(f"| {label} | {len(auc)} | {mean_std(auc)} | {mean_std(ll)} | {fl} | {l1} | {lb} | {pa} |")
            rows.append({"dataset": DATASETS[ds], "model": label, "seeds": len(auc), "test_auc": auc,
                         "test_logloss": ll, "cost": c})

        teach = {}
        for (d, bb, mode), runs in results.items():
            if d == ds and mode != "none":
                for m in runs:
                    teach.setdefault(m["seed"], m["teacher"])
        if teach:
            c = cost.get(f"{ds}/rim")
            row("RIM (teacher; FLOPs/latency include retrieval)", list(teach.values()), c)
            if c and "flops_retrieval" in c:
                lines.append(f"| ↳ of which retrieval | | | | {c['flops_retrieval']:,.0f} | "
                             f"{c['latency_ms_b1'] - c.get('latency_ms_b1_model_only', 0):.3f} | | |")
        for bb in args.backbones:
            for mode in args.modes:
                runs = results.get((ds, bb, mode))
                if runs:
                    row(f"{bb} {MODES[mode]}", runs, cost.get(f"{ds}/{bb}/{mode}"))
    text = "\n".join(lines) + "\n"
    print(text)
    root.mkdir(parents=True, exist_ok=True)
    (root / "rok_table.md").write_text(text)
    (root / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {root / 'rok_table.md'} and results.json")


if __name__ == "__main__":
    main()
