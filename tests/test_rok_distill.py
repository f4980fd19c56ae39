"""ROK: InfoNCE on a hand-computed case, both integration modes change the backbone as designed,
the frozen/fine-tuned knowledge base, and a smoke run of every rok config."""

import math

import pytest
import torch

from kdrec.data.spec import FeatureMap, FieldInfo
from kdrec.distill.ctr.rok import ROK, ROKConfig, info_nce
from kdrec.errors import ConfigError
from kdrec.models.ctr.rok import ROKStudent, ROKStudentConfig

FM = FeatureMap("t", [FieldInfo(f"f{i}", 7) for i in range(3)])
DNN = {"name": "dnn", "embed_dim": 4, "hidden": [8], "dropout": 0.0, "batch_norm": False}


def test_info_nce_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # cosine ignores the norm
    b = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    # cosines: [[1, 1/sqrt2], [0, 1/sqrt2]]; temperature 0.5 doubles them
    c = 1 / math.sqrt(2)
    l0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(2 * c)))
    l1 = -math.log(math.exp(2 * c) / (math.exp(0) + math.exp(2 * c)))
    assert info_nce(a, b, 0.5).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def _student(**kw):
    torch.manual_seed(0)
    return ROKStudent(FM, ROKStudentConfig(backbone=dict(DNN), repr_dim=5, ro_embed_dim=4,
                                           encoder_hidden=[6], zero_init=False, **kw)).eval()


def test_instance_wise_adds_a_linear_map_of_r_hat_to_the_logit_input():
    m = _student(instance=True, feature=False)
    x = torch.randint(0, 7, (6, 3))
    assert m.backbone.mlp[0].in_features == 3 * 4  # backbone unchanged
    r_hat, _ = m.kb(x)
    base = m.backbone.score(x, m.backbone.embedding(x))
    assert m(x).shape == (6,)
    assert torch.allclose(m(x), base + m.instance_head(r_hat).squeeze(-1))
    # equals concatenating r-hat to the final linear layer's input
    last, head = m.backbone.mlp[-1], m.instance_head[-1]
    h = torch.nn.Sequential(*list(m.backbone.mlp)[:-1])(m.backbone.embedding(x).flatten(1))
    w = torch.cat([last.weight, head.weight], 1)
    assert torch.allclose(m(x), torch.cat([h, r_hat], 1) @ w[0] + last.bias + head.bias, atol=1e-6)


def test_feature_wise_adds_f_fields_to_the_interaction_layer():
    m = _student(instance=False, feature=True)
    x = torch.randint(0, 7, (6, 3))
    assert m.backbone.mlp[0].in_features == 2 * 3 * 4  # built for 2F fields
    assert m.backbone.embedding.num_fields == 3  # own table: the F original fields only
    e = torch.cat([m.backbone.embedding(x), m.ro_gate * m.kb.ro_embedding(x)], 1)
    assert torch.allclose(m(x), m.backbone.score(torch.cat([x, x], 1), e))
    before = m(x)
    with torch.no_grad():
        m.kb.ro_embedding.weight.add_(1.0)
    assert not torch.allclose(before, m(x))


@pytest.mark.parametrize("name,extra", [
    ("fm", {}), ("lr", {}),
    ("deepfm", {"hidden": [8], "dropout": 0.0, "batch_norm": False}),
    ("dcnv2", {"cross_layers": 2, "dnn_hidden": [8], "dropout": 0.0, "batch_norm": False}),
])
def test_both_modes_work_on_other_backbones(name, extra):
    from kdrec.models.registry import MODELS, get_model_class

    get_model_class("fm")
    if name not in MODELS:
        pytest.skip(f"backbone {name} not registered")
    torch.manual_seed(0)
    m = ROKStudent(FM, ROKStudentConfig(backbone={"name": name, "embed_dim": 4, **extra}, repr_dim=5,
                                        ro_embed_dim=2, encoder_hidden=[6]))
    x = torch.randint(0, 7, (5, 3))
    assert m(x).shape == (5,) and isinstance(m.ro_proj, torch.nn.Linear)  # 2 -> 4 projection


def test_freeze_kb_leaves_knowledge_base_out_of_the_phase():
    from types import SimpleNamespace

    s = _student()
    kb = {id(p) for p in s.kb.parameters()}
    ctx = SimpleNamespace(student=s, task=None)
    frozen = ROK(ROKConfig()).phases(ctx)[0].params
    tuned = ROK(ROKConfig(freeze_kb=False)).phases(ctx)[0].params
    assert not kb & {id(p) for p in frozen} and kb <= {id(p) for p in tuned}
    with pytest.raises(ConfigError, match="kb_init=random"):  # names the frozen alternative
        ROK(ROKConfig(kb_init="scratch", freeze_kb=True))
    with pytest.raises(ConfigError, match="kb_init"):
        ROK(ROKConfig(kb_init="pretrain"))
    ROK(ROKConfig(kb_init="random", freeze_kb=True))  # the capacity control is allowed


ROK_CONFIGS = ["rok", "rok_no_contrastive", "rok_no_kd", "rok_instance", "rok_feature", "rok_finetune",
               "rok_random_kb"]


def test_smoke_every_rok_config_and_reuse(compose_cfg, tmp_path):
    from kdrec.stages import distill

    root = tmp_path / "out"
    results = {}
    for name in ROK_CONFIGS:
        cfg = compose_cfg("experiment=smoke_rok", f"distiller={name}", f"paths.root={root}",
                          "dataset.num_rows=1500", "trainer.epochs=1", "distiller.pretrain_epochs=1")
        m = distill.run.__wrapped__(cfg)
        assert 0.0 <= m["test"]["auc"] <= 1.0 and m["distiller"] == "rok"
        assert m["flops"]["teacher"]["flops_retrieval"] > 0
        # ROK needs no retrieval at inference: the student's FLOPs do not include any
        assert "flops_retrieval" not in m["flops"]["student"]
        results[name] = m
    assert "knowledge_base" in results["rok"] and "knowledge_base" not in results["rok_no_kd"]
    assert "knowledge_base" not in results["rok_random_kb"]
    # one teacher, one retrieval per split, knowledge bases cached beside the teacher
    teachers = [p for p in (root / "teachers" / "synthetic").iterdir() if not p.name.startswith(".")]
    assert len(teachers) == 1
    assert len([p for p in (root / "cache" / "retrieval").iterdir() if not p.name.startswith(".")]) == 1
    assert len(list(teachers[0].glob("cache/rok_kb-*.pt"))) == 2  # rok (shared by 4 + the random control) + no_contrastive


@pytest.mark.parametrize("exp", ["frappe_rok_dnn", "frappe_rok_deepfm", "frappe_rok_dcnv2",
                                 "ml100k_rok_dnn", "ml100k_rok_deepfm", "ml100k_rok_dcnv2"])
def test_experiment_configs_compose_and_build(compose_cfg, exp):
    from kdrec.distill.base import build_distiller
    from kdrec.models.registry import build_model, get_model_class

    cfg = compose_cfg(f"experiment={exp}")
    assert cfg.teacher.name == "rim" and cfg.distiller.name == "rok"
    if cfg.student.name not in ("dnn",):
        get_model_class("fm")
        from kdrec.models.registry import MODELS

        if cfg.student.name not in MODELS:
            pytest.skip(f"{cfg.student.name} not registered")
    fm = FeatureMap("t", [FieldInfo(f"f{i}", 7) for i in range(3)])
    teacher = build_model(cfg.teacher, fm)
    student = build_distiller(cfg.distiller).build_student(cfg.student, fm, teacher)
    assert student.build_config["backbone"]["name"] == cfg.student.name
    assert student(torch.randint(0, 7, (4, 3))).shape == (4,)


def test_bad_normalize_targets_is_a_config_error():
    with pytest.raises(ConfigError, match="normalize_targets"):
        ROK(ROKConfig(normalize_targets="zscore"))


def test_zero_init_starts_from_the_backbone_alone():
    torch.manual_seed(0)
    m = ROKStudent(FM, ROKStudentConfig(backbone=dict(DNN), repr_dim=5, ro_embed_dim=4,
                                        encoder_hidden=[6], zero_init=True)).eval()
    x = torch.randint(0, 7, (6, 3))
    e = torch.cat([m.backbone.embedding(x), torch.zeros(6, 3, 4)], 1)
    assert torch.allclose(m(x), m.backbone.score(torch.cat([x, x], 1), e))
    m(x).sum().backward()  # and both integrations get gradients to grow from zero
    assert m.ro_gate.grad.abs().sum() > 0 and m.instance_head[-1].weight.grad.abs().sum() > 0
