"""`kdrec benchmark-flops`: per-sample FLOPs (matrix + elementwise), embedding lookups, parameters
(embedding vs dense) and measured latency at batch 1 and 4096 for teacher and student (median of
interleaved rounds), plus the student/teacher ratios, written to ``flops.json`` (and into ``run=<dir>`` when given)."""

from __future__ import annotations

import statistics
from pathlib import Path

import hydra
from omegaconf import DictConfig

from kdrec.artifacts import atomic_write_json
from kdrec.bench.flops import ratios
from kdrec.config import config_dir
from kdrec.distill.base import build_distiller
from kdrec.models.registry import build_model
from kdrec.runs import load_models, load_run_config
from kdrec.runtime import prepare, run_dir, save_config, seed_everything
from kdrec.stages.output import guarded
from kdrec.tracking import record


# Latency is measured in rounds that alternate the models (teacher, student, teacher, ...), each
# round a full median-of-repeats profile of one model, and the median over rounds is kept: a slow
# moment of a shared machine then hits both models instead of whichever was being timed (timed one
# after the other, two runs of the same architecture differed by 28-70%).
LATENCY_ROUNDS = 5


def interleaved_latency(task, models: dict, rounds: int = LATENCY_ROUNDS) -> dict[str, dict[str, float]]:
    """Median over ``rounds`` alternating rounds of every ``latency_ms*`` figure ``task.profile``
    gives for each model."""
    seen: dict[str, list[dict[str, float]]] = {role: [] for role in models}
    for _ in range(rounds):
        for role, model in models.items():
            prof = task.profile(model, latency=True)
            seen[role].append({k: v for k, v in prof.items() if k.startswith("latency_ms")})
    return {role: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for role, rs in seen.items()}


def print_flops_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = ["flops_per_sample", "embedding_lookups", "params", "embedding_params", "dense_params",
            "latency_ms_b1", "latency_ms_b4096"]
    t = Table(title="per-sample cost")
    t.add_column("model")
    for c in cols:
        t.add_column(c.replace("_", " "), justify="right")
    for name in ("teacher", "student"):
        if name in result:
            t.add_row(f"{name} {result[name]['model']}",
                      *[f"{result[name].get(c, float('nan')):,.4g}" if c.startswith("latency")
                        else f"{result[name].get(c, float('nan')):,.0f}" for c in cols])
    if "ratios" in result:
        r = result["ratios"]
        t.add_row("student / teacher", f"{r.get('flops_per_sample_ratio', float('nan')):.2%}", "",
                  f"{r.get('params_ratio', float('nan')):.2%}", "",
                  f"{r.get('dense_params_ratio', float('nan')):.2%}",
                  f"{r.get('latency_ms_b1_ratio', float('nan')):.2%}",
                  f"{r.get('latency_ms_b4096_ratio', float('nan')):.2%}")
    import sys

    Console(width=None if sys.stdout.isatty() else 160).print(t)


@guarded
def run(cfg: DictConfig) -> dict:
    if cfg.run:
        rdir, run_cfg = load_run_config(cfg, "benchmark-flops")
    else:
        rdir, run_cfg = None, cfg
    rt = prepare(run_cfg)
    task, device, data = rt.task, rt.device, rt.data
    if rdir is not None:
        models = {k.split(" ", 1)[0]: v for k, v in load_models(run_cfg, rdir, task, data, "benchmark-flops").items()}
    else:  # cost does not depend on trained weights: fresh models of the configured shapes
        seed_everything(int(cfg.seed))
        teacher = build_model(cfg.teacher, task.feature_map, where="teacher").to(device)
        # the distiller's student (ROK: backbone on 2F fields + knowledge base sized by the teacher)
        student = build_distiller(cfg.distiller).build_student(cfg.student, task.feature_map, teacher)
        models = {"teacher": teacher, "student": student.to(device)}
    names = {"teacher": run_cfg.teacher.name, "student": run_cfg.student.name}
    result: dict = {"device": device.type, "dataset": run_cfg.dataset.name}
    for role, model in models.items():
        result[role] = {"model": names[role], **task.profile(model, latency=False)}
    for role, ms in interleaved_latency(task, models).items():
        result[role].update(ms)
    result["latency_rounds"] = LATENCY_ROUNDS
    if "teacher" in result and "student" in result:
        result["ratios"] = ratios(result["student"], result["teacher"])
    out = run_dir(cfg)
    save_config(out / "config_resolved.yaml", cfg)
    atomic_write_json(out / "flops.json", result)
    if rdir is not None:
        atomic_write_json(Path(rdir) / "flops.json", result)
    record(run_cfg, "benchmark-flops", out, result, source=rdir)
    print_flops_table(result)
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)
