#!/usr/bin/env python
"""Student vs teacher CPU latency for every KD-DAGFM preset, eager and through `kdrec export`.

    .venv/bin/python scripts/bench_latency.py                          # all presets, 1 and 2 threads
    .venv/bin/python scripts/bench_latency.py --presets frappe_crossnet_dagfm --threads 1
    .venv/bin/python scripts/bench_latency.py --out /tmp/lat.json --label after

For each preset the teacher and the student are built from the preset's config (fresh seeded
weights: latency does not depend on trained values) and timed on the same rows, at batch 1 and
batch 4096, on two paths:

* ``eager`` - ``model(x)`` under ``torch.no_grad()`` in eval mode, as ``kdrec evaluate`` runs it;
* ``export`` - the program ``kdrec export`` writes (``kdrec.stages.export.export_student``, used
  for the teacher too), saved, loaded back with ``torch.export.load(path).module()`` and called
  as a user serving it would.

Timings are medians over interleaved rounds (teacher, student, teacher, ... so that a slow
moment hits both); each round is ``--b1-calls`` calls at batch 1 (the median per call of a round)
or one call at batch 4096, each model's timed calls preceded by one untimed call of that model: a
server calls the model it serves back to back, and the first call after the other model's (a CIN
teacher's 100 ms evicts the caches) measured the switch, not the model (CIN -> DAGFM student at
batch 4096, 1 thread: 1.86 ms right after a teacher call, 1.29 ms in a loop of its own calls).
FLOPs/sample are ``kdrec.bench.flops.count_flops`` on the eager path at the same batch size (what
runs at that batch). Frappe presets use real Frappe_x1 test rows;
Criteo/Avazu presets (raw data not shipped) use the dataset's field list with ``--vocab`` ids per
field drawn uniformly (stated in the output). Run it idle: ``cpu-exclusive .venv/bin/python ...``.

Allocator: with glibc's defaults every call of a model whose intermediates total a few MB may
return them to the OS (heap trim / munmap) and page-fault them back in on the next call (measured:
~800 minor faults per call of DAGFM-outer at batch 4096, 0 once the thresholds are raised), so the
timings would depend on the allocator's adaptive state rather than on the model. The script
re-runs itself with ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` raised (what a caching
allocator such as jemalloc or tcmalloc gives a server), for teacher and student alike;
``--system-malloc`` keeps glibc's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

PRESETS = ("frappe_crossnet_dagfm", "frappe_cin_dagfm", "frappe_autoint_dagfm",
           "frappe_xdeepfm_dagfm_plus", "frappe_dcnv2_dagfm_plus", "frappe_autoint_plus_dagfm_plus",
           "criteo_crossnet_dagfm", "avazu_cin_dagfm")
BATCHES = (1, 4096)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def compose(preset: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from kdrec.config import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose("config", overrides=[f"experiment={preset}"])


def feature_map_and_rows(cfg, vocab: int, rows: int = 4096):
    """(feature map, int64 rows [rows, F], where the rows come from)."""
    from kdrec.data.registry import DataPaths, load_dataset
    from kdrec.data.spec import FeatureMap, FieldInfo

    if cfg.dataset.name == "frappe_x1":
        data = load_dataset(cfg.dataset, DataPaths(Path(cfg.paths.data_root), Path(cfg.paths.cache) / "data"))
        x = data.splits["test"].x.long()
        x = x.repeat((rows + len(x) - 1) // len(x), 1)[:rows]
        return data.feature_map, x, "Frappe_x1 test rows"
    names = [f if isinstance(f, str) else f["name"] for f in cfg.dataset.fields]
    fm = FeatureMap(cfg.dataset.name, [FieldInfo(n, vocab) for n in names])
    g = torch.Generator().manual_seed(0)
    return fm, torch.randint(0, vocab, (rows, len(names)), generator=g), \
        f"{len(names)} fields x {vocab} ids, uniform random (raw data not shipped)"


def served(model: torch.nn.Module, example: torch.Tensor, out_dir: Path):
    """The program `kdrec export` writes for ``model``, loaded back as a user would."""
    from kdrec.stages.export import export_student

    out_dir.mkdir(parents=True, exist_ok=True)
    path = export_student(model, example, out_dir)
    if path.suffix != ".pt2":
        raise SystemExit(f"export fell back to {path.suffix} for {type(model).__name__}")
    return torch.export.load(path).module()


def interleaved(fns: dict, x: torch.Tensor, rounds: int, calls: int, budget_s: float) -> dict[str, float]:
    """Median ms per call of each fn, timed in interleaved rounds of ``calls`` calls; fewer rounds
    (at least 3) where ``rounds`` would take longer than ``budget_s``."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        t0 = time.perf_counter()
        for f in fns.values():  # warm-up, and the cost of one round
            for _ in range(calls):
                f(x)
        rounds = max(3, min(rounds, int(budget_s / max(time.perf_counter() - t0, 1e-9))))
        for _ in range(rounds):
            for k, f in fns.items():
                f(x)  # untimed: a server calls one model back to back, not after the other one
                t0 = time.perf_counter()
                for _ in range(calls):
                    f(x)
                times[k].append((time.perf_counter() - t0) * 1e3 / calls)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_preset(preset: str, threads: list[int], args, work: Path) -> dict:
    from kdrec.bench.flops import count_flops
    from kdrec.models.registry import build_model

    cfg = compose(preset)
    fm, x, source = feature_map_and_rows(cfg, args.vocab)
    torch.manual_seed(0)
    models = {"teacher": build_model(cfg.teacher, fm, where="teacher").eval(),
              "student": build_model(cfg.student, fm, where="student").eval()}
    out = {"preset": preset, "rows": source, "teacher": cfg.teacher.name, "student": cfg.student.name,
           "interaction": cfg.student.interaction, "flops": {}, "latency_ms": {}}
    for b in BATCHES:
        out["flops"][f"b{b}"] = {k: count_flops(m, x[:b], batch=b)["flops_per_sample"] for k, m in models.items()}
    paths = {"eager": models}
    if not args.no_export:
        paths["export"] = {k: served(m, x[:8], work / preset / k) for k, m in models.items()}
    for n in threads:
        torch.set_num_threads(n)
        for path, ms in paths.items():
            for b in BATCHES:
                calls = args.b1_calls if b == 1 else 1
                rounds = args.rounds_b1 if b == 1 else args.rounds
                med = interleaved(dict(ms), x[:b], rounds, calls, args.budget)
                out["latency_ms"][f"{path}/t{n}/b{b}"] = med
                print(f"  {preset:32s} {path:6s} threads={n} b{b:<5d} teacher {med['teacher']:9.4f} ms"
                      f"  student {med['student']:9.4f} ms  ratio {med['student'] / med['teacher']:6.3f}",
                      flush=True)
    return out


def table(results: list[dict]) -> str:
    lines = ["| preset | FLOPs ratio b1 / b4096 | path | threads | latency ratio b1 | latency ratio b4096 "
             "| teacher ms b1 / b4096 | student ms b1 / b4096 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        fr = {b: r["flops"][f"b{b}"]["student"] / r["flops"][f"b{b}"]["teacher"] for b in BATCHES}
        keys = sorted({k.rsplit("/", 1)[0] for k in r["latency_ms"]})
        for key in keys:
            path, t = key.split("/")
            l1, lb = r["latency_ms"][f"{key}/b1"], r["latency_ms"][f"{key}/b4096"]
            lines.append(
                f"| {r['preset']} | {fr[1]:.3f} / {fr[4096]:.3f} | {path} | {t[1:]} "
                f"| {l1['student'] / l1['teacher']:.3f} | {lb['student'] / lb['teacher']:.3f} "
                f"| {l1['teacher']:.4f} / {lb['teacher']:.2f} | {l1['student']:.4f} / {lb['student']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--vocab", type=int, default=50_000, help="ids per field where raw data is absent")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds at batch 4096")
    ap.add_argument("--rounds-b1", type=int, default=30, help="interleaved rounds at batch 1")
    ap.add_argument("--b1-calls", type=int, default=50, help="calls per round at batch 1")
    ap.add_argument("--budget", type=float, default=6.0, help="seconds per measurement (fewer rounds beyond)")
    ap.add_argument("--no-export", action="store_true", help="time the eager path only")
    ap.add_argument("--system-malloc", action="store_true", help="keep glibc's allocator thresholds")
    ap.add_argument("--label", default="", help="a name stored with the results (e.g. before / after)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if not args.system_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            results.append(bench_preset(preset, args.threads, args, Path(tmp)))
    print(table(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"label": args.label, "torch": torch.__version__,
                                        "malloc": "system" if args.system_malloc else MALLOC_ENV,
                                        "results": results}, indent=1))


if __name__ == "__main__":
    main()
