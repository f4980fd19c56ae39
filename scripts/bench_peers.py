#!/usr/bin/env python
"""Peer throughput benchmark: kdrec vs FuxiCTR vs DeepCTR-Torch, same models, same data, same run.

    .venv/bin/python scripts/bench_peers.py                       # 1 epoch, dcnv2 + deepfm, 1 thread
    .venv/bin/python scripts/bench_peers.py --epochs 2 --models dcnv2 --threads 2 --repeats 2
    .venv/bin/python scripts/bench_peers.py --setup-only          # only build the peers' venv

Each (model, framework) is one child process (``scripts/peers/run_<framework>.py``), started in
turn, the framework order rotated from one model/repeat to the next; a child reads the CSVs of
Frappe_x1 (``--data-dir`` or KDREC_DATA_DIR, default ../shared/data), encodes them its own way
(timed apart: "prep s"), trains for exactly ``--epochs`` epochs (no early stopping) with the
hyperparameters of kdrec's ``conf/teacher/<model>.yaml`` (embedding 10, DNN 400x3 with BN, dropout,
4 full-rank cross layers in parallel for DCNv2, embedding L2 0.05) and Adam 1e-3, batch 4096,
gradient-norm clip 10 (FuxiCTR's default; DeepCTR-Torch cannot clip), then predicts the test split
``--infer-repeats`` times. Reported per child: training samples/s (training batches only; the
per-epoch validation of kdrec and FuxiCTR is timed and left out; also per CPU-second of the
same section, which other load on a shared machine disturbs far less), inference samples/s (median
of the repeats, batch ``--eval-batch-size``), peak RSS of the child (``os.wait4`` rusage, whole
process life, imports and preprocessing included) and test AUC / logloss from one shared AUC
function. kdrec/peer ratios follow the table; the JSON result goes to ``--out``.

The peers live in a venv of their own under ``--cache-dir`` (default ~/.cache/kdrec-peers), made
once: CPU torch pinned to kdrec's torch version first, then fuxictr and deepctr-torch with a
constraint file that keeps that torch (and polars<2, which fuxictr 2.3 needs). Nothing is added
to kdrec's own environment. See docs/bench_peers.md for what is and is not identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / "peers"
FRAMEWORKS = ("kdrec", "kdrec_bf16", "fuxictr", "deepctr")  # kdrec_bf16: trainer.precision=bf16
MODELS = ("dcnv2", "deepfm")
PEER_PINS = ["fuxictr==2.3.10", "deepctr-torch==0.3.0"]
SPLITS = ("train", "valid", "test")


def torch_pin() -> str:
    import torch

    return torch.__version__.split("+")[0]


def ensure_peer_venv(cache: Path) -> Path:
    """The peers' venv (created once; a marker file records the finished install)."""
    tv = torch_pin()
    venv = cache / f"venv-torch{tv}"
    py = venv / "bin" / "python"
    marker = venv / ".kdrec-peers-ok"
    want = " ".join([f"torch=={tv}", *PEER_PINS, "polars<2"])
    if marker.is_file() and marker.read_text().strip() == want and py.is_file():
        return py
    print(f"[setup] creating the peers' venv {venv} (once) ...", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text(f"torch=={tv}\npolars<2\n")
    pip = [str(py), "-m", "pip", "install", "-q"]
    # torch first, on its own: the CPU wheel kdrec uses; a bare `pip install fuxictr` would pull CUDA
    subprocess.run([*pip, f"torch=={tv}"], check=True)
    subprocess.run([*pip, "-c", str(constraints), *PEER_PINS, "polars<2"], check=True)
    got = subprocess.run([str(py), "-c", "import torch, fuxictr, deepctr_torch; print(torch.__version__)"],
                         check=True, capture_output=True, text=True).stdout.strip()
    if got.split("+")[0] != tv:
        raise SystemExit(f"[setup] the peers' venv has torch {got}, expected {tv}; remove {venv} and retry")
    marker.write_text(want + "\n")
    print(f"[setup] done: torch {got}, {', '.join(PEER_PINS)}", flush=True)
    return py


def model_spec(model: str, args) -> dict:
    """Hyperparameters from kdrec's own model yaml, so all three frameworks train the same thing."""
    from omegaconf import OmegaConf

    y = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "teacher" / f"{model}.yaml"), resolve=True)
    spec = {
        "model": model, "embed_dim": y["embed_dim"], "batch_norm": bool(y["batch_norm"]),
        "dropout": float(y["dropout"]), "embedding_l2": float(y.get("train", {}).get("embedding_l2", 0.0)),
        "epochs": args.epochs, "patience": args.patience or 100000, "threads": args.threads, "seed": args.seed, "lr": args.lr,
        "batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
        "max_grad_norm": args.max_grad_norm, "infer_repeats": args.infer_repeats,
        "data_dir": str(args.data_dir),
    }
    if model == "dcnv2":
        if y["structure"] != "parallel" or y["low_rank_mixture"]:
            raise SystemExit("bench_peers compares the parallel, full-rank DCNv2 only")
        spec.update(hidden=list(y["dnn_hidden"]), cross_layers=int(y["cross_layers"]))
    else:
        spec.update(hidden=list(y["hidden"]))
    return spec


def run_child(fw: str, spec: dict, peer_py: Path | None, work: Path, log_dir: Path) -> dict:
    ours = fw.startswith("kdrec")
    py = Path(sys.executable) if ours else peer_py
    tag = f"{spec['model']}-{fw}-{int(time.time() * 1000)}"
    spec = {**spec, "work_dir": str(work), "precision": "bf16" if fw == "kdrec_bf16" else "fp32"}
    spec_path, out_path = work / f"{tag}.spec.json", work / f"{tag}.out.json"
    log_path = log_dir / f"{tag}.log"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(spec["threads"]),
           "MKL_NUM_THREADS": str(spec["threads"]), "KDREC_DATA_DIR": spec["data_dir"],
           "RAY_DISABLE_IMPORT_WARNING": "1"}
    env.pop("PYTHONPATH", None)
    print(f"[run] {spec['model']:7s} {fw:8s} ... ", end="", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(py), str(PEERS / f"run_{'kdrec' if ours else fw}.py"), str(spec_path), str(out_path)],
                                cwd=str(PEERS), env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out_path.is_file():
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
        print(f"FAILED (exit {proc.returncode}); log {log_path}:\n{tail}", flush=True)
        return {"framework": fw, "model": spec["model"], "error": f"exit {proc.returncode}",
                "log": str(log_path)}
    res = json.loads(out_path.read_text())
    res["framework"] = fw  # kdrec_bf16 runs the kdrec child
    res.update(peak_rss_mb=usage.ru_maxrss / 1024.0, process_wall_s=wall,
               cpu_s=usage.ru_utime + usage.ru_stime, log=str(log_path))
    print(f"train {res['train_samples_per_s']:,.0f}/s ({res['train_samples_per_cpu_s']:,.0f}/CPU-s), "
          f"infer {res['infer_samples_per_s']:,.0f}/s, AUC {res['test_auc']:.4f}, "
          f"peak RSS {res['peak_rss_mb']:,.0f} MB ({wall:.0f}s)", flush=True)
    return res


def summarise(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per (model, framework): medians over repeats; then kdrec/peer ratios per model."""
    import statistics as st

    keys = ("preprocess_s", "train_samples_per_s", "train_samples_per_cpu_s", "infer_samples_per_s",
            "peak_rss_mb", "test_auc", "test_logloss", "valid_auc", "params")
    rows = []
    for model in dict.fromkeys(r["model"] for r in results):
        for fw in FRAMEWORKS:
            ok = [r for r in results if r["model"] == model and r["framework"] == fw and "error" not in r]
            if not ok:
                continue
            row = {"model": model, "framework": fw, "runs": len(ok)}
            for k in keys:
                vals = [r[k] for r in ok if r.get(k) is not None]
                row[k] = st.median(vals) if vals else None
            rows.append(row)
    ratios = []
    for kd in (r for r in rows if r["framework"].startswith("kdrec")):
        model = kd["model"]
        for peer in rows:
            if peer["model"] != model or peer["framework"].startswith("kdrec"):
                continue
            ratios.append({
                "model": model, "ours": kd["framework"], "peer": peer["framework"],
                "train_throughput_x": kd["train_samples_per_s"] / peer["train_samples_per_s"],
                "train_cpu_throughput_x": kd["train_samples_per_cpu_s"] / peer["train_samples_per_cpu_s"],
                "infer_throughput_x": kd["infer_samples_per_s"] / peer["infer_samples_per_s"],
                "peak_rss_x": kd["peak_rss_mb"] / peer["peak_rss_mb"],
                "preprocess_x": kd["preprocess_s"] / peer["preprocess_s"],
                "test_auc_diff": kd["test_auc"] - peer["test_auc"],
            })
    return rows, ratios


def print_tables(rows: list[dict], ratios: list[dict], args) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 132))  # logs/pipes default to 80 columns
    t = Table(title=f"Frappe_x1, {args.epochs} epoch(s), batch {args.batch_size}, "
                    f"{args.threads} torch thread(s), CPU")
    for c in ("model", "framework", "prep s", "train samples/s", "train samples/CPU-s", "infer samples/s",
              "peak RSS MB", "test AUC", "test logloss", "params"):
        t.add_column(c, justify="left" if c in ("model", "framework") else "right")
    for r in rows:
        t.add_row(r["model"], r["framework"], f"{r['preprocess_s']:.2f}", f"{r['train_samples_per_s']:,.0f}",
                  f"{r['train_samples_per_cpu_s']:,.0f}", f"{r['infer_samples_per_s']:,.0f}",
                  f"{r['peak_rss_mb']:,.0f}", f"{r['test_auc']:.4f}", f"{r['test_logloss']:.4f}",
                  f"{int(r['params']):,}")
    con.print(t)
    t = Table(title="kdrec / peer: train x, infer x > 1 = kdrec faster; peak RSS x, prep time x < 1 = kdrec "
                    "smaller / faster")
    for c in ("model", "ours", "peer", "train x", "train x (CPU-s)", "infer x", "peak RSS x", "prep time x",
              "AUC kdrec - peer"):
        t.add_column(c, justify="left" if c in ("model", "peer") else "right")
    for r in ratios:
        t.add_row(r["model"], r.get("ours", "kdrec"), r["peer"], f"{r['train_throughput_x']:.2f}", f"{r['train_cpu_throughput_x']:.2f}",
                  f"{r['infer_throughput_x']:.2f}", f"{r['peak_rss_x']:.2f}", f"{r['preprocess_x']:.2f}",
                  f"{r['test_auc_diff']:+.4f}")
    con.print(t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--models", default=",".join(MODELS), help="comma list of " + ", ".join(MODELS))
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma list of " + ", ".join(FRAMEWORKS))
    ap.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("KDREC_DATA_DIR", REPO.parent / "shared" / "data")),
                    help="folder holding frappe_x1/{train,valid,test}.csv (env KDREC_DATA_DIR)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra/inter-op threads, all frameworks")
    ap.add_argument("--repeats", type=int, default=1, help="runs per (model, framework); medians reported")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--eval-batch-size", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--patience", type=int, default=0,
                    help="early stopping on valid AUC after this many non-improving epochs, up to --epochs "
                         "(kdrec and FuxiCTR; 0: exactly --epochs epochs). For converged-AUC comparisons.")
    ap.add_argument("--max-grad-norm", type=float, default=10.0)
    ap.add_argument("--infer-repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--cache-dir", type=Path,
                    default=Path(os.environ.get("KDREC_PEERS_CACHE", Path.home() / ".cache" / "kdrec-peers")))
    ap.add_argument("--out", type=Path, default=None,
                    help="result JSON (default $KDREC_OUTPUTS/bench_peers/<time>.json)")
    ap.add_argument("--setup-only", action="store_true", help="only create the peers' venv")
    ap.add_argument("--show", type=Path, default=None, metavar="RESULT.json",
                    help="print the tables of an earlier result JSON and exit")
    args = ap.parse_args(argv)
    if args.show:
        saved = json.loads(args.show.read_text())
        rows, ratios = summarise(saved["runs"])
        print_tables(rows, ratios, argparse.Namespace(**saved["settings"]))
        return 0

    models = [m for m in args.models.split(",") if m]
    fws = [f for f in args.frameworks.split(",") if f]
    bad = [m for m in models if m not in MODELS] + [f for f in fws if f not in FRAMEWORKS]
    if bad or args.epochs < 1 or args.threads < 1:
        ap.error(f"unknown model/framework {bad}" if bad else "--epochs and --threads must be >= 1")
    peer_py = ensure_peer_venv(args.cache_dir) if any(not f.startswith("kdrec") for f in fws) or args.setup_only else None
    if args.setup_only:
        print(f"peers' python: {peer_py}")
        return 0
    args.data_dir = args.data_dir.resolve()
    missing = [str(args.data_dir / "frappe_x1" / f"{s}.csv") for s in SPLITS
               if not (args.data_dir / "frappe_x1" / f"{s}.csv").is_file()]
    if missing:
        print(f"SKIPPED: Frappe_x1 is not there ({', '.join(missing)} missing). Put the BARS "
              "Frappe_x1 CSVs under <data-dir>/frappe_x1/ and pass --data-dir or KDREC_DATA_DIR.")
        return 0

    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    out = args.out or Path(os.environ.get("KDREC_OUTPUTS", REPO / "outputs")) / "bench_peers" / f"{stamp}.json"
    log_dir = out.parent / f"{out.stem}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        k = 0
        for rep in range(args.repeats):
            for model in models:
                spec = model_spec(model, args)
                order = fws[k % len(fws):] + fws[:k % len(fws)]  # alternate who goes first
                k += 1
                for fw in order:
                    res = run_child(fw, spec, peer_py, Path(tmp), log_dir)
                    res["repeat"] = rep
                    results.append(res)
    rows, ratios = summarise(results)
    if rows:
        print_tables(rows, ratios, args)
    import torch

    from kdrec.artifacts import atomic_write_json

    atomic_write_json(out, {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "loadavg_at_end": os.getloadavg()},
        "runs": results, "summary": rows, "ratios": ratios})
    print(f"result: {out}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
