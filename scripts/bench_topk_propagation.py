"""LightGCN propagation layouts on a real graph (issue 12 item 3): forward + backward of
``num_layers`` products with the symmetric normalised adjacency, per layout. Run under
``cpu-exclusive``; figures are measured here.

    .venv/bin/python scripts/bench_topk_propagation.py --threads 2 --dim 64 --layers 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from kdrec.config import config_dir
from kdrec.data.registry import DataPaths, load_dataset
from kdrec.models.topk.lightgcn import Adjacency, SymmetricSpMM, normalized_adjacency

warnings.filterwarnings("ignore", category=UserWarning)


def layouts(A_csr: torch.Tensor):
    A_coo = A_csr.to_sparse_coo().coalesce()
    rows, cols = A_coo.indices()
    vals = A_coo.values()

    class GatherScatter(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.zeros_like(x).index_add_(0, rows, x[cols] * vals[:, None])

        @staticmethod
        def backward(ctx, g):  # symmetric: same product
            return torch.zeros_like(g).index_add_(0, rows, g[cols] * vals[:, None])

    bags = Adjacency.of_csr(A_csr)
    return {
        "csr_autograd": lambda x: A_csr @ x,
        "coo_sparse_mm_autograd": lambda x: torch.sparse.mm(A_coo, x),
        "csr_symmetric_backward": lambda x: SymmetricSpMM.apply(A_csr, x),
        "coo_symmetric_backward": lambda x: SymmetricSpMM.apply(A_coo, x),
        "index_add_symmetric_backward": lambda x: GatherScatter.apply(x),
        "bags_symmetric_backward": lambda x: SymmetricSpMM.apply(bags, x),  # the model's (lightgcn.py)
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="gowalla_m1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("config", [f"dataset={a.dataset}", f"paths.root={Path('outputs').resolve()}"])
    data = load_dataset(cfg.dataset, DataPaths(Path(cfg.paths.data_root), Path(cfg.paths.cache) / "data"))
    fm = data.feature_map
    A = normalized_adjacency(fm.train_users, fm.train_items, fm.num_users, fm.num_items)
    n = fm.num_users + fm.num_items
    torch.manual_seed(0)
    ref = None
    x0 = torch.randn(n, a.dim)
    for name, prop in layouts(A).items():
        if a.only and name not in a.only:
            continue
        x = x0.clone().requires_grad_(True)

        def run():
            e, acc = x, x
            for _ in range(a.layers):
                e = prop(e)
                acc = acc + e
            out = acc / (a.layers + 1)
            out.pow(2).sum().backward()
            return out

        out = run()  # warm-up + correctness against the first layout
        g = x.grad.clone()
        if ref is None:
            ref = (out.detach(), g)
        err = max(float((out.detach() - ref[0]).abs().max()), float((g - ref[1]).abs().max()))
        ts = []
        for _ in range(a.repeats):
            x.grad = None
            t0 = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t0)
        print(json.dumps({"layout": name, "threads": a.threads, "dim": a.dim, "layers": a.layers,
                          "nnz": int(A._nnz()), "fwd_bwd_ms": round(statistics.median(ts) * 1e3, 1),
                          "max_abs_diff_vs_first": err}), flush=True)


if __name__ == "__main__":
    main()
