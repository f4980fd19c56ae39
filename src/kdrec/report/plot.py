"""Pareto plot: test metric vs per-sample FLOPs (and vs latency where measured), one point per
configuration, error bars over seeds, teachers as squares and students as circles."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from kdrec.artifacts import atomic_write_bytes

COSTS = [("flops_per_sample", "per-sample FLOPs (log scale)"),
         ("latency_ms_b4096", "latency of a 4096-row batch, ms (log scale)")]


def pareto_plot(summary: pl.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next(c[:-5] for c in summary.columns if c.startswith("test_") and c.endswith("_mean"))
    costs = [(c, label) for c, label in COSTS if f"{c}_mean" in summary.columns
             and summary[f"{c}_mean"].drop_nulls().len() > 0]
    fig, axes = plt.subplots(1, len(costs), figsize=(7.5 * len(costs), 5.5), squeeze=False)
    for ax, (cost, label) in zip(axes[0], costs):
        for i, r in enumerate(summary.iter_rows(named=True)):
            x, y = r.get(f"{cost}_mean"), r[f"{metric}_mean"]
            if x is None or y is None:
                continue
            std = r[f"{metric}_std"]
            ax.errorbar(x, y, yerr=std if std is not None and std == std else None,
                        fmt="s" if r["role"] == "teacher" else "o", color=f"C{i % 10}", capsize=4,
                        label=f"{r['role']}: {r['config']} (n={r['n']})")
            ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{metric.replace('_', ' ')} (mean ± std over seeds)")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{metric.replace('_', ' ')} vs cost (teachers: squares, students: circles)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
