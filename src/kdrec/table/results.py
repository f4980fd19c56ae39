"""One small JSON per finished table job, under ``<paths.results>/<table>/<row>/seed<k>-<sig>.json``
(``results/`` in the project, meant to be committed): the job's row, seed, identity overrides and
signature, its metrics (the teacher's too), per-sample FLOPs, latency once measured (with the load
average at that moment), package versions, wall seconds and the kdrec git commit. ``kdrec table``
counts these files as done, so a table resumes on another machine from the repository, and
``--from-results`` rebuilds the table from them alone."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from functools import lru_cache
from pathlib import Path

from kdrec.artifacts import atomic_write_json
from kdrec.errors import KdrecError
from kdrec.table.jobs import Job

FORMAT = 1
MACHINE_KEYS = ("dir", "teacher_dir")  # absolute paths of one machine: not kept


@lru_cache(maxsize=1)
def environment() -> dict:
    import numpy
    import polars
    import torch

    import kdrec

    return {"versions": {"kdrec": kdrec.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
                         "polars": polars.__version__, "python": platform.python_version()},
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "machine": machine(), "git": git_commit()}


# environment variables that cap the kernels torch, oneDNN and MKL pick, and so their rounding
NUMERICS_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")


def machine() -> dict:
    """What decides a run's float rounding besides the code, the package versions and the threads:
    the CPU (its instruction sets pick the kernels: bf16 matmuls on AMX, on AVX512-BF16 or
    emulated round differently; oneDNN's blocking follows the cache sizes), the variables that cap
    those choices, and the GPU where there is one. Two runs can agree bit for bit only when this
    agrees; on another machine the same command gives numbers within float drift, not the same."""
    import torch

    cpu = _cpuinfo()
    probes = {"avx2": "_is_avx2_supported", "avx512": "_is_avx512_supported", "avx512_bf16": "_is_avx512_bf16_supported",
              "amx": "_is_amx_tile_supported"}  # torch's own probes, private but present since 2.1
    cpu["isa"] = [name for name, fn in probes.items() if getattr(torch.cpu, fn, lambda: False)()]
    cpu["aten_capability"] = torch.backends.cpu.get_cpu_capability()
    cpu["caches"] = _caches()
    out = {"cpu": cpu, "env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ}}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def _cpuinfo() -> dict:
    """Vendor, family, model and name of the first CPU (Linux' /proc/cpuinfo; elsewhere what
    ``platform`` knows). The name alone says little in a VM ("Intel(R) Xeon(R) Processor")."""
    keys = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "model name": "name"}
    info: dict = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor's block
            key, _, value = line.partition(":")
            if key.strip() in keys:
                info[keys[key.strip()]] = value.strip()
    except OSError:
        pass
    return info or {"name": platform.processor() or platform.machine()}


def _caches() -> dict:
    """Cache sizes of CPU 0 by level and type, e.g. {"L1d": "48K", "L2": "2048K", "L3": "307200K"}."""
    out = {}
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((d / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        out[f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")] = size
    return out


def git_commit() -> dict | None:
    """The commit of the kdrec source tree (None outside a git checkout); ``dirty`` when src/ or
    conf/ differ from it."""
    root = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if sha.returncode != 0:
            return None
        st = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src", "conf"],
                            capture_output=True, text=True, timeout=10)
        return {"commit": sha.stdout.strip(), "dirty": bool(st.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return None


def _strip(d: dict | None) -> dict | None:
    return None if d is None else {k: v for k, v in d.items() if k not in MACHINE_KEYS}


def read_json(path: Path, what: str) -> dict:
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KdrecError(f"{what} {path} cannot be read as JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise KdrecError(f"{what} {path} is not a JSON object")
    return obj


def from_run(job: Job, seconds: float | None, git: dict | None = None, threads: int | None = None) -> dict:
    """The result record of a finished job, from its run directory's metrics.json. ``git``: the
    source tree when the job started, which is what its process ran (read now if not given: a
    run directory found finished). ``threads``: the torch threads it ran with (what its
    ``seconds`` depend on; None where unknown)."""
    m = read_json(job.run_dir / "metrics.json", "metrics file")
    flops = m.pop("flops", None) or {}
    teacher = _strip(m.pop("teacher", None))
    return {"format": FORMAT, "table": job.table, "row": job.row.id, "label": job.row.label,
            "group": job.row.group, "seed": job.seed, "stage": job.stage,
            "overrides": job.identity_overrides(), "signature": job.signature,
            "model": m.get("model"), "distiller": m.get("distiller"), "dataset": m.get("dataset"),
            "metrics": _strip(m), "teacher": teacher,
            "flops": {k: v for k, v in flops.items() if k in ("student", "teacher")},
            "latency": None, "seconds": seconds, "threads": threads,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **environment(),
            **({"git": git} if git is not None else {})}


def job_seconds(result: dict) -> float | None:
    """What a job costs: its wall seconds, or its training seconds where those are larger: a job
    resumed from a checkpoint, or one that found its teacher already trained by another job,
    records only its own last run's wall time (the fit loop's seconds carry over a resume)."""
    wall = result.get("seconds")
    train = (result.get("metrics") or {}).get("train_seconds")
    if wall is None or not isinstance(train, (int, float)):
        return wall
    return max(float(wall), float(train))


def load(path: Path) -> dict | None:
    """The result at ``path``, None if there is none; an unreadable file is an error naming it."""
    if not Path(path).is_file():
        return None
    r = read_json(path, "result file")
    test = (r.get("metrics") or {}).get("test")
    if not isinstance(test, dict) or not test:
        raise KdrecError(f"result file {path} holds no test metrics; delete it to rerun the job")
    return r


def save(path: Path, result: dict) -> None:
    atomic_write_json(path, result)


def add_latency(result: dict, flops_json: dict, loadavg: tuple[float, float, float], threads: int) -> dict:
    """Record a ``benchmark-flops`` measurement: latency per model, the load average just before
    it (latency is only comparable on an idle machine), and the FLOPs of models the job's own
    metrics lacked (a teacher row's)."""
    lat = {}
    for role in ("student", "teacher"):
        prof = flops_json.get(role)
        if not prof:
            continue
        lat[role] = {k: v for k, v in prof.items() if k.startswith("latency_ms")}
        result.setdefault("flops", {}).setdefault(role, {k: v for k, v in prof.items()
                                                         if not k.startswith("latency_ms") and k != "model"})
    result["latency"] = {**lat, "loadavg": [round(x, 2) for x in loadavg], "threads": threads,
                         "device": flops_json.get("device"), "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return result
