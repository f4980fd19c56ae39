"""Benchmark the exact field-BM25 retrieval: every row of a dataset (train rows excluding
themselves, valid, test) against the train pool, on CPU (or --device cuda).

    .venv/bin/python scripts/bench_retrieval.py                      # frappe_x1, 2 threads
    .venv/bin/python scripts/bench_retrieval.py --dataset movielens_100k --threads 1
    .venv/bin/python scripts/bench_retrieval.py --check 200          # + exactness vs the dense path

Prints rows/second per split and overall, the candidate/dense split of the work, and the peak
resident memory (bounded by the chunk sizes: pair_budget pairs, dense chunks).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="frappe_x1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--pair-budget", type=int, default=100_000)
    ap.add_argument("--limit", type=int, default=0, help="queries per split (0: all rows)")
    ap.add_argument("--check", type=int, default=0,
                    help="also verify N random queries against the brute-force dense path")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()

    from hydra import compose, initialize_config_dir

    from kdrec.config import config_dir
    from kdrec.retrieval.bm25 import FieldBM25, RetrievalConfig, RetrievalStats
    from kdrec.runtime import load_data

    torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset={args.dataset}"])
    data = load_data(cfg)
    dev = torch.device(args.device)
    fm = data.feature_map
    pool = data.splits["train"].x.to(dev)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rcfg = RetrievalConfig(k=args.k, pair_budget=args.pair_budget)
    t0 = time.perf_counter()
    index = FieldBM25(pool, fm.vocab_sizes, fm.field_names, rcfg)
    build_s = time.perf_counter() - t0
    print(f"{args.dataset}: pool {pool.shape[0]:,} rows x {pool.shape[1]} fields; index built in "
          f"{build_s:.2f}s; candidate fields {[fm.field_names[f] for f in index.cand]}; "
          f"{args.threads} thread(s), {dev.type}")
    out = {"dataset": args.dataset, "threads": args.threads, "device": dev.type, "k": args.k,
           "pool_rows": pool.shape[0], "index_seconds": build_s, "splits": {}}
    total = RetrievalStats()
    for split in ("train", "valid", "test"):
        x = data.splits[split].x.to(dev)
        if args.limit:
            x = x[:args.limit]
        excl = torch.arange(x.shape[0], device=dev) if split == "train" else None
        st = RetrievalStats()
        index.search(x, exclude=excl, stats=st)
        d = st.as_dict()
        out["splits"][split] = d
        for k in ("queries", "seconds", "candidate_pairs", "dense_queries", "dense_pairs"):
            setattr(total, k, getattr(total, k) + getattr(st, k))
        print(f"  {split:5s}: {d['queries']:8,} queries in {d['seconds']:7.2f}s = "
              f"{d['rows_per_second']:9,.0f} rows/s | {d['candidate_pairs'] / max(d['queries'], 1):7,.0f} "
              f"candidate pairs/query, {d['dense_queries']:,} dense fallbacks")
    total.query_fields = len(index.qf)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["total"] = total.as_dict()
    out["peak_rss_mb"] = rss / 1024
    out["rss_growth_mb"] = (rss - rss0) / 1024
    print(f"  all  : {total.queries:8,} queries in {total.seconds:7.2f}s = "
          f"{total.queries / total.seconds:9,.0f} rows/s; peak RSS {rss / 1024:,.0f} MB "
          f"(+{(rss - rss0) / 1024:,.0f} MB during search)")
    if args.check:
        g = torch.Generator().manual_seed(0)
        x = data.splits["test"].x
        q = x[torch.randperm(x.shape[0], generator=g)[:args.check]].to(dev)
        dense = FieldBM25(pool, fm.vocab_sizes, fm.field_names,
                          RetrievalConfig(k=args.k, candidate_fields=[]))
        t = time.perf_counter()
        _, s_dense = dense.search(q)
        dense_rate = q.shape[0] / (time.perf_counter() - t)
        _, s_fast = index.search(q)
        same = torch.equal(torch.isfinite(s_dense), torch.isfinite(s_fast)) and torch.allclose(
            s_dense.nan_to_num(neginf=-1), s_fast.nan_to_num(neginf=-1), atol=1e-5)
        out["check"] = {"queries": q.shape[0], "identical_scores": bool(same),
                        "dense_rows_per_second": dense_rate}
        print(f"  check: {q.shape[0]} test queries, top-{args.k} scores identical to brute force: "
              f"{same}; brute force alone runs at {dense_rate:,.0f} rows/s")
        if not same:
            sys.exit(1)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
