"""ROK's same-capacity control (``distiller=rok_random_kb``): a frozen knowledge base drawn at the
pretrained one's scale, never trained; and `kdrec benchmark-flops` without ``run=`` profiling the
distiller's student (ROK's backbone on 2F fields + knowledge base), not the bare backbone."""

import pytest
import torch

from kdrec.distill.ctr.rok import ROK
from kdrec.models.ctr.rok import KnowledgeBase

SMOKE = ("experiment=smoke_rok", "dataset.num_rows=1500", "trainer.epochs=2", "distiller.pretrain_epochs=1")


def test_randomize_kb_draws_each_field_at_the_pretrained_scale():
    torch.manual_seed(0)
    kb = KnowledgeBase([400, 2000], 8, [16], repr_dim=6)
    ref = {k: v.clone() for k, v in kb.state_dict().items()}
    ref["ro_embedding.weight"][:400] = 0.1 + 0.5 * torch.randn(400, 8)  # field 0: mean 0.1, std 0.5
    ref["ro_embedding.weight"][400:] = -1.0 + 2.0 * torch.randn(2000, 8)  # field 1: mean -1, std 2
    ref["encoder.0.weight"] = 3.0 * torch.randn(16, 16)
    before = torch.get_rng_state()
    ROK.randomize_kb(kb, ref, seed=7)
    assert torch.equal(torch.get_rng_state(), before)  # data order is not shifted by the draw
    w = kb.ro_embedding.weight.detach()
    sd0, mu0 = torch.std_mean(w[:400])
    sd1, mu1 = torch.std_mean(w[400:])
    assert sd0.item() == pytest.approx(0.5, rel=0.05) and mu0.item() == pytest.approx(0.1, abs=0.03)
    assert sd1.item() == pytest.approx(2.0, rel=0.05) and mu1.item() == pytest.approx(-1.0, abs=0.05)
    assert kb.encoder[0].weight.std().item() == pytest.approx(3.0, rel=0.15)
    # a draw, not the reference's values; the same seed draws the same knowledge base
    assert torch.corrcoef(torch.stack([w.flatten(), ref["ro_embedding.weight"].flatten()]))[0, 1].abs() < 0.05
    again = KnowledgeBase([400, 2000], 8, [16], repr_dim=6)
    ROK.randomize_kb(again, ref, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(kb.state_dict().values(), again.state_dict().values()))


def _student_state(root):
    runs = sorted((root / "runs" / "in_process").glob("*/student.pt"), key=lambda p: p.stat().st_mtime)
    return torch.load(runs[-1], weights_only=False)["state_dict"]


def test_random_kb_is_frozen_same_size_as_rok_and_not_the_pretrained_one(compose_cfg, tmp_path, monkeypatch):
    from kdrec.stages import distill

    drawn = {}
    original = ROK.randomize_kb

    def spy(kb, pretrained, seed):
        original(kb, pretrained, seed)
        drawn.update({k: v.detach().clone() for k, v in kb.state_dict().items()})

    monkeypatch.setattr(ROK, "randomize_kb", staticmethod(spy))
    root = tmp_path / "out"
    m_rok = distill.run.__wrapped__(compose_cfg(*SMOKE, f"paths.root={root}"))
    rok_kb = {k[3:]: v for k, v in _student_state(root).items() if k.startswith("kb.")}
    m_rand = distill.run.__wrapped__(compose_cfg(*SMOKE, "distiller=rok_random_kb", f"paths.root={root}"))
    state = _student_state(root)
    rand_kb = {k[3:]: v for k, v in state.items() if k.startswith("kb.")}

    assert drawn and rand_kb.keys() == drawn.keys() == rok_kb.keys()
    for k in drawn:  # frozen: after training, exactly the initial draw
        assert torch.equal(rand_kb[k], drawn[k]), k
        assert not torch.allclose(rand_kb[k], rok_kb[k]), k  # and not the pretrained knowledge base
    # the other student weights did train (the phase ran on them)
    assert m_rand["phases"][0]["epochs_run"] >= 1 and state["ro_gate"].abs().sum() > 0
    # same architecture: same parameter count and FLOPs as ROK's student
    assert m_rand["params"] == m_rok["params"]
    assert m_rand["flops"]["student"]["flops_per_sample"] == m_rok["flops"]["student"]["flops_per_sample"]


def test_benchmark_flops_without_run_profiles_the_distillers_student(compose_cfg, tmp_path, monkeypatch):
    from kdrec.models.registry import build_model
    from kdrec.runtime import prepare
    from kdrec.stages import benchmark_flops, distill

    # what is checked is the model benchmark-flops builds; its latency rounds (the RIM teacher
    # retrieves live at batch 4096) were most of the default test run's slowest test
    monkeypatch.setattr(benchmark_flops, "interleaved_latency", lambda task, models: {})
    cfg = compose_cfg(*SMOKE, f"paths.root={tmp_path / 'out'}")
    bench = benchmark_flops.run.__wrapped__(cfg)
    task = prepare(cfg).task
    plain = {"student": task.profile(build_model(cfg.student, task.feature_map), latency=False)}
    m = distill.run.__wrapped__(cfg)
    # the trained ROK student and the fresh one benchmark-flops builds have the same cost
    assert bench["student"]["params"] == m["params"]
    assert bench["student"]["flops_per_sample"] == m["flops"]["student"]["flops_per_sample"]
    # and it is larger than the bare backbone (what benchmark-flops reported before)
    assert bench["student"]["flops_per_sample"] > plain["student"]["flops_per_sample"]
    assert bench["student"]["params"] > plain["student"]["params"]


def test_knowledge_base_and_results_do_not_depend_on_which_backbone_trained_it_first(compose_cfg, tmp_path):
    """The knowledge base is cached per (teacher, settings, seed) and shared by every backbone: the
    run that trains it must not leave its backbone's mark on it (its initialisation), or the same
    command would give different numbers depending on the order of runs."""
    from kdrec.stages import distill

    a, b = tmp_path / "a", tmp_path / "b"
    first_a = distill.run.__wrapped__(compose_cfg(*SMOKE, f"paths.root={a}"))  # trains the KB itself
    distill.run.__wrapped__(compose_cfg(*SMOKE, "student=fm", f"paths.root={b}"))  # another backbone first
    again_b = distill.run.__wrapped__(compose_cfg(*SMOKE, f"paths.root={b}"))  # reuses fm's KB
    kb_a, kb_b = (torch.load(next(r.glob("teachers/*/*/cache/rok_kb-*.pt")), weights_only=False)
                  ["value"]["state_dict"] for r in (a, b))
    assert kb_a.keys() == kb_b.keys() and all(torch.equal(kb_a[k], kb_b[k]) for k in kb_a)
    assert again_b["test"] == first_a["test"]
