#!/usr/bin/env python
"""Encoding throughput: kdrec's polars pipeline vs FuxiCTR's own preprocessing, same file, same run.

    .venv/bin/python scripts/bench_encode.py                 # 1,000,000 rows
    .venv/bin/python scripts/bench_encode.py --rows 200000 --skip-fuxictr

1. Generates a Criteo-layout file (label, I1-I13 integers with ~20% missing, C1-C26 8-hex-digit
   categories drawn from power laws of sizes 10..200,000), tab-separated, with a header line
   (FuxiCTR's reader needs column names; kdrec sniffs the header either way).
2. kdrec: ``dataset=criteo`` settings (log-square buckets for I*, min_count 10, seeded 8:1:1
   split), from raw text to int32 parquet + feature map + tensors in memory, cold cache.
3. FuxiCTR (``pip install fuxictr "polars<2"`` into its own venv under /tmp, CPU torch first,
   never into kdrec's env; fuxictr 2.3 uses an argument polars 2 removed): its Criteo processor (``fuxictr.datasets.criteo``, the same log-square buckets,
   ``min_categr_count`` 10), ``build_dataset`` fitting and transforming the whole file to parquet.
   FuxiCTR's random split works on pandas frames only, so it gets no split: it fits and encodes all
   rows, kdrec fits on its 80% train split and encodes all rows into three files.

Each side runs in its own process; wall time is measured by this script and peak memory is the
largest summed RSS of the process and all its descendants (FuxiCTR starts Ray workers), sampled
every 50 ms from /proc. rows/s = rows / wall time (process start to exit, imports included);
"in-process s" is the time inside the encoding call alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INTS = [f"I{i}" for i in range(1, 14)]
CATS = [f"C{i}" for i in range(1, 27)]


def generate(path: Path, rows: int, seed: int = 0) -> None:
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    cols: dict = {"label": (rng.random(rows) < 0.25).astype(np.int8)}
    for c in INTS:
        v = np.floor(rng.lognormal(1.5, 1.8, rows)).astype(np.int64) - (rng.random(rows) < 0.05)
        s = pl.Series(c, v)
        cols[c] = pl.select(pl.when(pl.lit(pl.Series(rng.random(rows) < 0.2))).then(None).otherwise(s)).to_series()
    sizes = np.geomspace(10, 200_000, len(CATS)).astype(int)
    for c, n in zip(CATS, sizes):
        vocab = pl.Series([f"{x:08x}" for x in rng.integers(0, 2**32, n)])
        p = 1.0 / np.arange(1, n + 1) ** 1.05
        ids = rng.choice(n, rows, p=p / p.sum())
        s = vocab.gather(ids)
        cols[c] = pl.select(pl.when(pl.lit(pl.Series(rng.random(rows) < 0.05))).then(None).otherwise(s)).to_series()
    df = pl.DataFrame({k: (v.alias(k) if isinstance(v, pl.Series) else v) for k, v in cols.items()})
    tmp = path.with_suffix(".tmp")
    df.write_csv(tmp, separator="\t", include_header=True, null_value="")
    os.replace(tmp, path)


def _tree_rss(root: int) -> int:
    """Summed VmRSS (bytes) of ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def measure(cmd: list[str], env: dict | None = None) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{err[-4000:]}")
    last = [line for line in out.splitlines() if line.startswith("{")]
    return {"wall_s": wall, "peak_rss_mb": peak[0] / 2**20, **(json.loads(last[-1]) if last else {})}


KDREC_CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from omegaconf import OmegaConf
    from kdrec.data.registry import DataPaths, load_dataset
    src, cache = sys.argv[1], sys.argv[2]
    cfg = OmegaConf.to_container(OmegaConf.load(Path(sys.argv[3]) / "conf/dataset/criteo.yaml"))
    cfg["files"] = {"all": src}
    t = time.perf_counter()
    d = load_dataset(cfg, DataPaths(Path("/"), Path(cache)))
    enc = time.perf_counter() - t
    t = time.perf_counter()
    load_dataset(cfg, DataPaths(Path("/"), Path(cache)))
    print(json.dumps({"inner_s": enc, "cache_hit_s": time.perf_counter() - t,
                      "rows": sum(len(s) for s in d.splits.values()),
                      "vocab": sum(d.feature_map.vocab_sizes)}))
""")

FUXI_CHILD = textwrap.dedent("""
    import json, logging, os, sys, time
    src, root = sys.argv[1], sys.argv[2]
    from fuxictr.datasets.criteo import CustomizedFeatureProcessor
    from fuxictr.preprocess import build_dataset
    ints = [f"I{i}" for i in range(1, 14)]
    cats = [f"C{i}" for i in range(1, 27)]
    feature_cols = [
        {"name": ints, "active": True, "dtype": "float", "type": "categorical",
         "preprocess": "convert_to_bucket", "fill_na": 0},
        {"name": cats, "active": True, "dtype": "str", "type": "categorical", "fill_na": ""}]
    label_col = {"name": "label", "dtype": "float"}
    t = time.perf_counter()
    fp = CustomizedFeatureProcessor(feature_cols=feature_cols, label_col=label_col,
                                    dataset_id="bench", data_root=root)
    build_dataset(fp, train_data=src, data_format="csv", sep="\\t", min_categr_count=10)
    enc = time.perf_counter() - t
    import polars as pl
    rows = pl.scan_parquet(os.path.join(root, "bench", "train.parquet")).select(pl.len()).collect().item()
    print(json.dumps({"inner_s": enc, "rows": rows}))
""")


def ensure_fuxictr(venv: Path) -> Path:
    py = venv / "bin" / "python"
    check = "import fuxictr, polars; assert int(polars.__version__.split('.')[0]) < 2"
    if py.is_file() and subprocess.run([str(py), "-c", check], capture_output=True).returncode == 0:
        return py
    print(f"creating {venv} with fuxictr (CPU torch first) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    # fuxictr 2.3 calls scan_csv(dtypes=...), removed in polars 2.0
    subprocess.run([*pip, "fuxictr", "polars<2"], check=True)
    return py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/kdrec-bench"))
    ap.add_argument("--fuxictr-venv", type=Path, default=Path("/tmp/fuxictr-venv"))
    ap.add_argument("--skip-fuxictr", action="store_true")
    args = ap.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.workdir / f"criteo_layout_{args.rows}.csv"  # tab-separated; FuxiCTR wants a .csv name
    if not src.is_file():
        t = time.perf_counter()
        generate(src, args.rows)
        print(f"generated {src} ({src.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f}s")
    print(f"input: {src}, {args.rows:,} rows, {src.stat().st_size / 2**20:.0f} MiB")

    results = {}
    cache = args.workdir / "kdrec-cache"
    shutil.rmtree(cache, ignore_errors=True)
    results["kdrec"] = measure([sys.executable, "-c", KDREC_CHILD, str(src), str(cache), str(REPO)])
    if not args.skip_fuxictr:
        py = ensure_fuxictr(args.fuxictr_venv)
        root = args.workdir / "fuxictr-data"
        shutil.rmtree(root, ignore_errors=True)
        env = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1"}
        results["fuxictr"] = measure([str(py), "-c", FUXI_CHILD, str(src), str(root)], env=env)

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"encoding {args.rows:,} Criteo-layout rows ({os.cpu_count()} CPU cores)")
    for c in ("tool", "wall s", "rows/s", "in-process s", "peak RSS MiB", "notes"):
        t.add_column(c, justify="left" if c in ("tool", "notes") else "right")
    for name, r in results.items():
        note = (f"cache hit {r['cache_hit_s']:.2f}s, {r['vocab']:,} ids" if name == "kdrec"
                else f"{r.get('rows', 0):,} rows written")
        t.add_row(name, f"{r['wall_s']:.1f}", f"{args.rows / r['wall_s']:,.0f}", f"{r.get('inner_s', 0):.1f}",
                  f"{r['peak_rss_mb']:,.0f}", note)
    Console().print(t)
    if "fuxictr" in results:
        ratio = results["fuxictr"]["wall_s"] / results["kdrec"]["wall_s"]
        print(f"kdrec / FuxiCTR throughput ratio (wall, process start to exit): {ratio:.2f}x")
    (args.workdir / "bench_encode.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
