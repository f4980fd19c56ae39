"""Loop behaviour: resume after an interruption equals an uninterrupted run; NaN stops cleanly."""

import json

import pytest
import torch

import kdrec.train.loop as loop
from kdrec.errors import TrainingError
from kdrec.stages import distill


class Interrupted(Exception):
    pass


def _run(compose_cfg, tmp_path, name, *overrides):
    cfg = compose_cfg("experiment=smoke", "trainer.epochs=4", "trainer.patience=10",
                      f"paths.root={tmp_path / 'out'}", *overrides)
    return distill.run.__wrapped__(cfg)  # the stage body, without Hydra's run dir handling


def test_resume_after_interruption_gives_identical_metrics(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    full = _run(compose_cfg, tmp_path, "full")

    # a second config (different seed) interrupted after epoch 2 of the student, then resumed
    def boom(phase, epoch):
        if phase == "distill" and epoch == 1:
            raise Interrupted

    monkeypatch.setattr(loop, "_after_epoch", boom)
    with pytest.raises(Interrupted):
        _run(compose_cfg, tmp_path, "interrupted")
    monkeypatch.setattr(loop, "_after_epoch", lambda *a: None)
    lasts = list((tmp_path / "out" / "work").rglob("distill_last.pt"))
    assert len(lasts) == 1, "the interrupted run's own work directory holds its checkpoint"
    resumed = _run(compose_cfg, tmp_path, "resumed", "resume=true")
    assert resumed["phases"][0]["epochs_run"] == full["phases"][0]["epochs_run"]
    for split in ("valid", "test"):
        assert resumed[split]["auc"] == pytest.approx(full[split]["auc"], abs=1e-6)
        assert resumed[split]["logloss"] == pytest.approx(full[split]["logloss"], abs=1e-6)


def test_without_resume_an_old_work_dir_is_discarded(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loop, "_after_epoch", lambda p, e: (_ for _ in ()).throw(Interrupted) if e == 0 and p == "distill" else None)
    with pytest.raises(Interrupted):
        _run(compose_cfg, tmp_path, "a")
    monkeypatch.setattr(loop, "_after_epoch", lambda *a: None)
    out = _run(compose_cfg, tmp_path, "b")
    assert out["phases"][0]["epochs_run"] == 4


def test_nan_loss_stops_with_clear_message_and_keeps_best(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from kdrec.tasks.ctr import CTRTask

    real_loss = CTRTask.task_loss
    calls = {"n": 0}

    def poisoned(self, model, batch):
        calls["n"] += 1
        loss = real_loss(self, model, batch)
        return loss * float("nan") if calls["n"] > 15 else loss

    monkeypatch.setattr(CTRTask, "task_loss", poisoned)
    with pytest.raises(TrainingError, match="became nan"):
        _run(compose_cfg, tmp_path, "nan", "distiller=none")
    best = list((tmp_path / "out" / "work").rglob("train_best.pt"))
    assert best, "the best checkpoint from before the NaN must be kept"
    state = torch.load(best[0], weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["modules"]["model"].values())


def test_bf16_autocast_trains_close_to_fp32(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fp32 = _run(compose_cfg, tmp_path, "fp32", "distiller=none", "student=dnn", "seed=3")
    bf16 = _run(compose_cfg, tmp_path, "bf16", "distiller=none", "student=dnn", "seed=3", "trainer.precision=bf16")
    # bf16 rounding changes the trajectory, not what is learned: same AUC to within 0.01 on smoke data
    assert bf16["test"]["auc"] > 0.6
    assert abs(bf16["test"]["auc"] - fp32["test"]["auc"]) < 0.01
    assert bf16["test"]["auc"] != fp32["test"]["auc"]  # autocast really ran in bf16


def test_unknown_precision_is_a_config_error(compose_cfg, tmp_path):
    from kdrec.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.precision"):
        _run(compose_cfg, tmp_path, "bad", "trainer.precision=fp8")


def test_diverging_teacher_stops_with_error_and_caches_nothing(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from kdrec.stages import pretrain_teacher
    from kdrec.tasks.ctr import CTRTask

    real_eval = CTRTask.evaluate
    calls = {"n": 0}

    def exploding(self, model, split):
        out = real_eval(self, model, split)
        if split == "valid":
            calls["n"] += 1
            if calls["n"] == 2:  # the second evaluation: logloss far above the first one
                out = {**out, "logloss": 1.7e13}
        return out

    monkeypatch.setattr(CTRTask, "evaluate", exploding)
    cfg = compose_cfg("experiment=smoke", "trainer.epochs=4", f"paths.root={tmp_path / 'out'}")
    with pytest.raises(TrainingError, match="diverged at epoch 2.*logloss"):
        pretrain_teacher.run.__wrapped__(cfg)
    assert not list((tmp_path / "out" / "teachers").rglob("checkpoint.pt")), "a diverged teacher is not cached"


def test_eval_every_counts_patience_in_evaluations(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = _run(compose_cfg, tmp_path, "every", "distiller=none", "trainer.epochs=5", "trainer.eval_every=2")
    ph = out["phases"][0]
    assert ph["epochs_run"] == 5 and ph["evaluations"] == 3  # after epochs 2, 4 and the last (5)
    assert ph["best_epoch"] in (2, 4, 5)


def test_relative_min_delta_stops_on_negligible_gains():
    from kdrec.train.loop import _better

    assert _better(0.8001, 0.8, "max", 1e-6, rel=False)
    assert not _better(0.8001, 0.8, "max", 1e-3, rel=True)  # 0.0001 < 0.001 x 0.8
    assert _better(0.81, 0.8, "max", 1e-3, rel=True)
    assert _better(0.59, 0.6, "min", 1e-3, rel=True) and not _better(0.5999, 0.6, "min", 1e-3, rel=True)


def test_foreach_adam_updates_as_the_default_bit_for_bit():
    """The loop's ``foreach`` Adam (3x faster on CPU) must not move any committed result: the same
    parameters as torch's one-tensor-at-a-time default, with decayed and undecayed groups."""
    torch.manual_seed(0)
    init = [torch.randn(300, 16) * 1e-2, torch.randn(200, 16), torch.randn(16)]
    grads = [[torch.randn_like(p) * 1e-3 for p in init] for _ in range(30)]

    def run(**kw):
        ps = [torch.nn.Parameter(p.clone()) for p in init]
        opt = torch.optim.Adam([{"params": ps[:2], "weight_decay": 1e-8}, {"params": ps[2:], "weight_decay": 0.0}],
                               lr=1e-3, **kw)
        for g in grads:
            for p, gg in zip(ps, g):
                p.grad = gg.clone()
            opt.step()
        return ps

    assert all(torch.equal(a, b) for a, b in zip(run(), run(foreach=True)))


def test_added_trainer_keys_stay_out_of_signatures_at_their_old_behaviour():
    from kdrec.train.config import TrainConfig

    assert "negatives" not in TrainConfig().identity() and TrainConfig().identity()["progress"] is None
    assert TrainConfig(negatives=300).identity()["negatives"] == 300
