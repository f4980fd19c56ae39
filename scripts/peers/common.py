"""Shared by the three benchmark workers (kdrec, FuxiCTR, DeepCTR-Torch): one spec, one clock, one
AUC. Only numpy and the standard library here, so it imports in kdrec's venv and in the peers' venv.

A worker is started as ``python scripts/peers/run_<framework>.py SPEC.json OUT.json``; it reads the
spec written by ``scripts/bench_peers.py``, trains for ``spec["epochs"]`` epochs, predicts the test
split ``spec["infer_repeats"]`` times and writes one result dict to OUT.json.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

FIELDS = ["user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather",
          "country", "city"]
LABEL = "label"


def load_spec() -> tuple[dict, Path]:
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: {sys.argv[0]} SPEC.json OUT.json")
    return json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already set once in this process
        pass


def split_path(spec: dict, split: str) -> str:
    return os.path.join(spec["data_dir"], "frappe_x1", f"{split}.csv")


def roc_auc(y, p) -> float:
    """Exact ROC AUC with ties counted as one half (Mann-Whitney U on average ranks)."""
    y = np.asarray(y, dtype=np.float64).reshape(-1) > 0.5
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    _, inv, counts = np.unique(p, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    r = avg_rank[inv]
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def log_loss(y, prob) -> float:
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(prob, dtype=np.float64).reshape(-1), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def sigmoid(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-z))


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed_predictions(predict, repeats: int) -> tuple[np.ndarray, list[float]]:
    """Call ``predict()`` (-> probabilities for the test split) ``repeats`` times; the wall times
    of each call and the last predictions."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = predict()
        times.append(time.perf_counter() - t)
    return np.asarray(out, dtype=np.float64).reshape(-1), times


def finish(out_path: Path, spec: dict, *, framework: str, version: str, preprocess_s: float,
           train_s: float, train_rows: int, epochs_run: int, infer_times: list[float],
           test_y, test_prob, params: int, train_cpu_s: float,
           extra: dict | None = None) -> None:
    test_y = np.asarray(test_y).reshape(-1)
    infer_s = float(np.median(infer_times))
    import torch

    res = {
        "framework": framework,
        "version": version,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "model": spec["model"],
        "epochs": epochs_run,
        "preprocess_s": preprocess_s,
        "train_s": train_s,
        "train_rows_per_epoch": train_rows,
        "train_samples_per_s": train_rows * epochs_run / train_s,
        "train_cpu_s": train_cpu_s,  # process CPU time of the same section (robust to other load)
        "train_samples_per_cpu_s": train_rows * epochs_run / train_cpu_s,
        "infer_s_median": infer_s,
        "infer_s_all": infer_times,
        "infer_rows": int(test_y.size),
        "infer_samples_per_s": test_y.size / infer_s,
        "test_auc": roc_auc(test_y, test_prob),
        "test_logloss": log_loss(test_y, test_prob),
        "params": int(params),
        "rss_self_peak_mb": peak_rss_mb(),
    }
    if extra:
        res.update(extra)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, out_path)
    print(json.dumps({k: res[k] for k in ("framework", "model", "train_samples_per_s",
                                          "infer_samples_per_s", "test_auc")}), flush=True)
