"""KD-DAGFM distiller: phase structure (embedding copied from the teacher and frozen while
distilling, unfrozen for fine-tuning, teacher never touched), the loss on a hand-computed batch,
config errors, and a smoke `distill` per experiment preset on tiny generated data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from kdrec.config import train_config
from kdrec.distill.base import DistillContext, build_distiller
from kdrec.errors import ConfigError
from kdrec.train.loop import fit

TINY_DATA = ["dataset=synthetic", "dataset.num_rows=3000", "dataset.num_fields=5",
             "dataset.vocab_size=20", "trainer.epochs=2", "trainer.batch_size=512",
             "trainer.progress=false", "device=cpu", "device.threads=1"]
# shrink each teacher so a preset runs in about a second
TINY_TEACHER = {
    "cin": ["teacher.cin_layers=[4,4]"],
    "crossnet": ["teacher.cross_layers=2"],
    "autoint": ["teacher.attention_layers=1", "teacher.attention_dim=8", "teacher.num_heads=2"],
    "xdeepfm": ["teacher.cin_layers=[4]", "teacher.dnn_hidden=[16]"],
    "dcnv2": ["teacher.cross_layers=2", "teacher.dnn_hidden=[16]"],
    "autoint_plus": ["teacher.attention_layers=1", "teacher.attention_dim=8", "teacher.num_heads=2",
                     "teacher.dnn_hidden=[16]"],
}
PRESETS = {
    "frappe_cin_dagfm": "cin", "frappe_crossnet_dagfm": "crossnet", "frappe_autoint_dagfm": "autoint",
    "frappe_xdeepfm_dagfm_plus": "xdeepfm", "frappe_dcnv2_dagfm_plus": "dcnv2",
    "frappe_autoint_plus_dagfm_plus": "autoint_plus",
    "criteo_crossnet_dagfm": "crossnet", "avazu_cin_dagfm": "cin",
}


@pytest.fixture
def work(tmp_path, monkeypatch, compose_cfg):
    """A scratch cwd, outputs under it (stages outside a Hydra job write to out/runs/in_process/),
    one torch thread, and ``cfg(overrides)`` composing through conftest's shared Hydra context."""
    monkeypatch.setenv("KDREC_OUTPUTS", str(tmp_path / "out"))
    monkeypatch.chdir(tmp_path)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield lambda overrides: compose_cfg(*overrides)
    torch.set_num_threads(n)


def _pieces(cfg):
    from kdrec.config import train_config
    from kdrec.models.registry import build_model
    from kdrec.runtime import build_task, load_data

    data = load_data(cfg)
    task = build_task(cfg, data, torch.device("cpu"), train_config(cfg, cfg.student).batch_size)
    torch.manual_seed(0)
    teacher = build_model(cfg.teacher, task.feature_map, where="teacher")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = build_model(cfg.student, task.feature_map, where="student")
    return task, teacher, student


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_smoke_distill(preset, work, tmp_path):
    from kdrec.stages.distill import run

    cfg = work([f"experiment={preset}", *TINY_DATA, *TINY_TEACHER[PRESETS[preset]]])
    m = run(cfg)
    assert [p["phase"] for p in m["phases"]] == ["distill", "finetune"]
    assert m["distiller"] == cfg.distiller.name and m["model"] == cfg.student.name
    assert 0.0 <= m["test"]["auc"] <= 1.0 and m["test"]["logloss"] > 0
    r = m["flops"]["ratios"]
    assert 0 < r["flops_per_sample_ratio"] and r["params_ratio"] > 0
    [run] = (tmp_path / "out" / "runs" / "in_process").iterdir()  # outside Hydra: a fresh run dir
    assert (run / "metrics.json").is_file() and (run / "student.pt").is_file()


def test_phases_freeze_copy_and_never_touch_teacher(work, tmp_path):
    cfg = work(["experiment=frappe_cin_dagfm", *TINY_DATA, *TINY_TEACHER["cin"]])
    task, teacher, student = _pieces(cfg)
    t_emb = teacher.embedding.weight.detach().clone()
    distiller = build_distiller(cfg.distiller)
    ctx = DistillContext(student, teacher, task, torch.device("cpu"), tmp_path / "tdir", 0)
    distiller.setup(ctx)
    assert student.embedding is not teacher.embedding
    torch.testing.assert_close(student.embedding.weight.detach(), t_emb)

    distill, finetune = distiller.phases(ctx)
    emb_id = id(student.embedding.weight)
    assert emb_id not in {id(p) for p in distill.params}
    assert emb_id in {id(p) for p in finetune.params}
    from kdrec.config import train_config

    tcfg = train_config(cfg, cfg.student)
    dag_before = student.dag.p.detach().clone()
    fit(distill, task, tcfg, ckpt_dir=tmp_path / "w", seed=0, save_modules={"model": student})
    torch.testing.assert_close(student.embedding.weight.detach(), t_emb)  # frozen while distilling
    assert not torch.equal(student.dag.p.detach(), dag_before)  # ...while the DAG learned
    fit(finetune, task, tcfg, ckpt_dir=tmp_path / "w", seed=0, save_modules={"model": student})
    assert not torch.equal(student.embedding.weight.detach(), t_emb)  # fine-tuning moves it
    torch.testing.assert_close(teacher.embedding.weight, t_emb)  # the teacher never changes


def test_distill_loss_by_hand(work):
    cfg = work(["experiment=frappe_crossnet_dagfm", *TINY_DATA, *TINY_TEACHER["crossnet"],
                "distiller.alpha=0.3", "distiller.beta=7.0"])
    task, teacher, student = _pieces(cfg)
    distiller = build_distiller(cfg.distiller)
    ctx = DistillContext(student, teacher, task, torch.device("cpu"), None, 0)
    distiller.setup(ctx)
    distill, _ = distiller.phases(ctx)
    batch = next(task.train_batches(torch.Generator().manual_seed(0), 64))
    with torch.no_grad():
        zs, zt = student(batch.x), teacher(batch.x)
        bce = -(batch.y * F.logsigmoid(zs) + (1 - batch.y) * F.logsigmoid(-zs)).mean()
        want = 0.3 * bce + 7.0 * ((zt - zs) ** 2).mean()
        torch.testing.assert_close(distill.loss(batch), want)


def test_finetune_can_be_switched_off_and_overrides_pass_through(work):
    cfg = work(["experiment=frappe_cin_dagfm", *TINY_DATA, *TINY_TEACHER["cin"],
                "distiller.finetune=false", "+distiller.distill_overrides.lr=0.01"])
    task, teacher, student = _pieces(cfg)
    d = build_distiller(cfg.distiller)
    ctx = DistillContext(student, teacher, task, torch.device("cpu"), None, 0)
    d.setup(ctx)
    phases = d.phases(ctx)
    assert [p.name for p in phases] == ["distill"]
    assert phases[0].overrides == {"patience": 15, "lr_plateau_patience": 1000, "lr": 0.01}


def test_distill_phase_stops_as_the_official_code(work):
    """Ethan-TZ/DAGFM train.py: 15 epochs without a validation gain, the learning rate never cut;
    fine-tuning keeps the student's trainer settings (here the preset's patience 5, lr cuts)."""
    cfg = work(["experiment=frappe_cin_dagfm", *TINY_DATA, *TINY_TEACHER["cin"]])
    task, teacher, student = _pieces(cfg)
    d = build_distiller(cfg.distiller)
    ctx = DistillContext(student, teacher, task, torch.device("cpu"), None, 0)
    d.setup(ctx)
    distill, finetune = d.phases(ctx)
    base = train_config(cfg, cfg.student)
    dcfg, fcfg = base.with_overrides(distill.overrides), base.with_overrides(finetune.overrides)
    assert (dcfg.patience, dcfg.lr_plateau_patience) == (15, 1000)
    assert dcfg.lr_plateau_patience >= dcfg.patience  # no lr cut can happen before the stop
    assert fcfg == base and base.patience != 15
    assert build_distiller({"name": "kd_dagfm_plus"}).cfg.distill_overrides == {"patience": 15, "lr_plateau_patience": 1000}


def test_config_errors(work):
    cfg = work(["experiment=frappe_cin_dagfm", *TINY_DATA, *TINY_TEACHER["cin"], "student.embed_dim=4"])
    task, teacher, student = _pieces(cfg)
    with pytest.raises(ConfigError, match="embed_dim"):
        build_distiller(cfg.distiller).setup(DistillContext(student, teacher, task, torch.device("cpu"), None))
    from kdrec.models.registry import build_model

    fm_student = build_model({"name": "fm", "embed_dim": 10}, task.feature_map)
    student = fm_student
    with pytest.raises(ConfigError, match="student"):
        build_distiller(cfg.distiller).setup(DistillContext(student, teacher, task, torch.device("cpu"), None))
    with pytest.raises(ConfigError, match="alpah"):
        build_distiller({"name": "kd_dagfm", "alpah": 1.0})
