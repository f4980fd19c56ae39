"""Pareto plot: test metric vs per-sample FLOPs, one point per configuration, error bars over seeds."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from kdrec.artifacts import atomic_write_bytes


def pareto_plot(summary: pl.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next(c[:-5] for c in summary.columns if c.startswith("test_") and c.endswith("_mean"))
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for r in summary.iter_rows(named=True):
        x, y = r.get("flops_per_sample_mean"), r[f"{metric}_mean"]
        if x is None or y is None:
            continue
        err = r[f"{metric}_std"] if r[f"{metric}_std"] == r[f"{metric}_std"] else None
        marker = "s" if r["role"] == "teacher" else "o"
        ax.errorbar(x, y, yerr=err, fmt=marker, capsize=4, label=f"{r['role']}: {r['config']} (n={r['n']})")
        ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("per-sample FLOPs (log scale)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (mean ± std over seeds)")
    ax.set_title("accuracy vs cost")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
