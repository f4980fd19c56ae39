#!/usr/bin/env python
"""Training throughput of the heavy KD-DAGFM teachers, before and after, in one run.

    .venv/bin/python scripts/bench_teachers.py                       # cin, autoint, autoint_plus; 1 and 2 threads
    .venv/bin/python scripts/bench_teachers.py --teachers cin --precision fp32 --threads 2
    .venv/bin/python scripts/bench_teachers.py --profile autoint     # torch.profiler table too

Each teacher is built from its yaml (``conf/teacher/<name>.yaml``) on the Frappe_x1 feature map.
"before" is the same model with its interaction layers swapped for the implementation of commit
``--before`` (default 6ad9874), loaded from git into a temporary module (``models/layers/cin.py``
and ``models/layers/attention.py``) and given the very same weights; "after" is this checkout.
Both train on the same real Frappe_x1 train batches (batch 4096 unless ``--batch``): forward
under the trainer's autocast (``--precision bf16`` like ``trainer.precision=bf16``, or fp32),
BCE, backward, Adam step. Rows/s = rows / wall time over ``--batches`` batches after 2 warm-up
batches, alternating before/after ``--repeats`` times (median). Before timing, the two are
checked to give the same logits and gradients on one batch (fp32, eval mode, relative error
printed). The allocator is glibc's with its default thresholds, as `kdrec` trains: the whole-batch
CIN's 100 MB intermediates are then mmap'd fresh (page faults) on every step; ``--tuned-malloc``
raises the mmap/trim thresholds (as scripts/bench_latency.py does) to see the layers without that.
Run it idle: ``cpu-exclusive .venv/bin/python scripts/bench_teachers.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
TEACHERS = ("cin", "autoint", "autoint_plus")
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def old_module(commit: str, rel: str, tmp: Path):
    """``rel`` (a path under src/kdrec) as it was at ``commit``, imported as a standalone module."""
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:src/kdrec/{rel}"],
                         check=True, capture_output=True, text=True).stdout
    path = tmp / f"before_{rel.replace('/', '_')}"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def compose(teacher: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from kdrec.config import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose("config", overrides=["dataset=frappe_x1", f"teacher={teacher}"])


def with_before_layers(model: torch.nn.Module, commit: str, tmp: Path) -> torch.nn.Module:
    """A copy of ``model`` whose CIN / self-attention layers are the ``commit`` implementation."""
    import copy

    from kdrec.models.layers.attention import FieldSelfAttention
    from kdrec.models.layers.cin import CIN

    before = copy.deepcopy(model)
    for name, child in list(before.named_modules()):
        parent_name, _, attr = name.rpartition(".")
        parent = before.get_submodule(parent_name) if parent_name else before
        if isinstance(child, CIN):
            old = old_module(commit, "models/layers/cin.py", tmp).CIN(child.num_fields, child.layer_sizes)
        elif isinstance(child, FieldSelfAttention):
            old = old_module(commit, "models/layers/attention.py", tmp).FieldSelfAttention(*child.init_args)
        else:
            continue
        old.load_state_dict(child.state_dict())
        setattr(parent, attr, old)
    return before


def check_equal(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Relative differences of the logits and of every parameter's gradient, fp32, in eval mode
    (dropout off: the two draw their masks in different layouts, so train-mode outputs differ)."""
    grads = []
    for m in (a, b):
        m.eval()
        m.zero_grad()
        z = m(x)
        F.binary_cross_entropy_with_logits(z, y).backward()
        grads.append((z.detach(), [p.grad.clone() for p in m.parameters() if p.grad is not None]))
    (za, ga), (zb, gb) = grads
    return {"logits_rel_err": ((za - zb).norm() / zb.norm()).item(),
            "grad_rel_err": max(((u - v).norm() / v.norm().clamp_min(1e-30)).item() for u, v in zip(ga, gb))}


def rows_per_s(model, batches, precision: str) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    model.train()

    def step(x, y):
        with autocast:
            loss = F.binary_cross_entropy_with_logits(model(x), y).float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for x, y in batches[:2]:
        step(x, y)
    t0 = time.perf_counter()
    for x, y in batches[2:]:
        step(x, y)
    return sum(len(y) for _, y in batches[2:]) / (time.perf_counter() - t0)


def profile(model, batches, precision: str) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    x, y = batches[0]
    with tprofile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        with autocast:
            loss = F.binary_cross_entropy_with_logits(model(x), y).float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=30, max_shapes_column_width=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=TEACHERS)
    ap.add_argument("--before", default="6ad9874", help="git commit of the 'before' layers")
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--batches", type=int, default=6, help="timed batches per measurement (+2 warm-up)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--profile", nargs="*", default=[], choices=TEACHERS, help="print a torch.profiler table")
    ap.add_argument("--tuned-malloc", action="store_true",
                    help="raise glibc's mmap/trim thresholds (default: glibc's own, as `kdrec` trains)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if args.tuned_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})

    from kdrec.data.registry import DataPaths, load_dataset
    from kdrec.models.registry import build_model

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for teacher in args.teachers:
            cfg = compose(teacher)
            data = load_dataset(cfg.dataset, DataPaths(Path(cfg.paths.data_root), Path(cfg.paths.cache) / "data"))
            split = data.splits["train"]
            g = torch.Generator().manual_seed(0)
            idx = torch.randperm(len(split.y), generator=g)[:(args.batches + 2) * args.batch]
            batches = [(split.x[i].long(), split.y[i].float()) for i in idx.split(args.batch)]
            torch.manual_seed(0)
            after = build_model(cfg.teacher, data.feature_map, where="teacher")
            before = with_before_layers(after, args.before, Path(tmp))
            check = check_equal(after, before, *batches[0])
            for threads in args.threads:
                torch.set_num_threads(threads)
                runs = {"before": [], "after": []}
                for _ in range(args.repeats):
                    for name, m in (("before", before), ("after", after)):
                        runs[name].append(rows_per_s(m, batches, args.precision))
                res = {k: statistics.median(v) for k, v in runs.items()}
                res.update(check, speedup=res["after"] / res["before"])
                results[f"{teacher}/threads={threads}"] = res
                print(f"{teacher:13s} {args.precision} threads={threads}: before {res['before']:8.0f} rows/s"
                      f"  after {res['after']:8.0f} rows/s  x{res['speedup']:.2f}   (same logits: rel. err "
                      f"{check['logits_rel_err']:.1e}, grads {check['grad_rel_err']:.1e})", flush=True)
            if teacher in args.profile:
                torch.set_num_threads(args.threads[0])
                for name, m in (("before", before), ("after", after)):
                    print(f"--- {teacher} {name}, {args.threads[0]} thread(s)\n{profile(m, batches, args.precision)}")
    if args.out is not None:
        args.out.write_text(json.dumps({"precision": args.precision, "threads": args.threads,
                                        "malloc": MALLOC_ENV if args.tuned_malloc else "glibc defaults",
                                        "batch": args.batch, "before_commit": args.before,
                                        "results": results}, indent=1))


if __name__ == "__main__":
    main()
