"""`kdrec export run=<dir>`: the run's student as a ``torch.export`` program (``student.pt2``,
dynamic batch size) plus its feature map, ready for serving without kdrec's training code.
A model with an inference form (``serving_module()``, e.g. DAGFM: edge maps with the DAG mask
folded in, batch-last layout) is exported in that form, so the program holds the derived weights
as constants instead of recomputing them per call. Falls back to TorchScript (``student.ts``) for
a model ``torch.export`` cannot trace."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from kdrec.artifacts import atomic_write_bytes, atomic_write_json
from kdrec.config import config_dir
from kdrec.errors import KdrecError
from kdrec.runs import load_models, load_run_config
from kdrec.runtime import prepare, run_dir
from kdrec.stages.output import guarded
from kdrec.tracking import record

log = logging.getLogger("kdrec")


def serving_form(model: torch.nn.Module) -> torch.nn.Module:
    """What to export for ``model``: its inference form for every batch size where it has one."""
    model.eval()
    make = getattr(model, "serving_module", None)
    return make(small_batch=False) if make is not None else model


def export_student(student: torch.nn.Module, example: torch.Tensor, out_dir: Path) -> Path:
    student = serving_form(student)
    try:
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        program = torch.export.export(student, (example,), dynamic_shapes={"x": {0: batch}})
        path = out_dir / "student.pt2"
        tmp = out_dir / ".student.tmp.pt2"  # torch.export.save wants the .pt2 suffix
        torch.export.save(program, tmp)
        tmp.replace(path)
    except Exception as exc:  # noqa: BLE001 - any tracing failure falls back to TorchScript
        log.warning("torch.export failed (%s); falling back to TorchScript", exc)
        import io

        scripted = torch.jit.trace(student, (example,))
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        path = out_dir / "student.ts"
        atomic_write_bytes(path, buf.getvalue())
    return path


@guarded
def run(cfg: DictConfig) -> dict:
    rdir, run_cfg = load_run_config(cfg, "export", needs_student=True)
    rt = prepare(run_cfg)
    task, data = rt.task, rt.data
    if task.kind != "ctr":
        raise KdrecError(f"export: only CTR students can be exported; this run's task is {task.kind!r}")
    student = next(m for k, m in load_models(run_cfg, rdir, task, data, "export").items() if k.startswith("student"))
    out = run_dir(cfg)
    path = export_student(student, task.splits["test"].x[:8], out)
    task.feature_map.save(out / "feature_map.json")
    info = {"run": str(rdir), "program": str(path), "format": path.suffix.lstrip("."),
            "feature_map": str(out / "feature_map.json"), "input": "int64 [batch, num_fields] field-local ids",
            "output": "float32 [batch] logits"}
    atomic_write_json(out / "export.json", info)
    record(run_cfg, "export", out, {}, source=rdir)
    log.info("exported %s to %s", run_cfg.student.name, path)
    return info


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)
