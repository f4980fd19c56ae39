"""DAGFM's inference form: equal to the training path on every layout (dense small batch, factored
small batch of a wide model, batch-last large batch), never stale after the weights change, kept
out of the state dict, and what `kdrec export` writes."""

from __future__ import annotations

import copy

import pytest
import torch

from kdrec.data.spec import FeatureMap, FieldInfo
from kdrec.models.registry import build_model


def _model(name: str, interaction: str, fields: int = 5, dim: int = 3, vocab: int = 9, seed: int = 0):
    fm = FeatureMap("t", [FieldInfo(f"f{i}", vocab + i) for i in range(fields)])
    torch.manual_seed(seed)
    extra = {"mlp_hidden": [8, 6], "batch_norm": True} if name == "dagfm_plus" else {}
    m = build_model({"name": name, "embed_dim": dim, "interaction": interaction, "depth": 3,
                     "embed_init": "xavier", **extra}, fm)
    with torch.no_grad():  # a non-identity connection matrix and non-trivial batch-norm statistics
        m.dag.connect.add_(0.3 * torch.randn(fields, fields))
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.normal_()
                mod.bias.normal_()
    return m.eval(), fm


def _rows(fm: FeatureMap, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, v, (n,), generator=g) for v in fm.vocab_sizes], 1)


def _training_path(m, x):
    with torch.enable_grad():
        return m.score(x, m.embedding(x)).detach()


@pytest.mark.parametrize("name", ["dagfm", "dagfm_plus"])
@pytest.mark.parametrize("interaction", ["inner", "outer", "kernel"])
def test_inference_path_equals_training_path(name, interaction):
    m, fm = _model(name, interaction)
    sv = m.serving_module()
    assert sv.dense_small and sv.small_max >= 2
    for batch in (1, 2, sv.small_max, sv.small_max + 1, 700):  # both sides of the switch
        x = _rows(fm, batch)
        want = _training_path(m, x)
        with torch.no_grad():
            torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(sv.large(x), want, rtol=1e-5, atol=1e-6)
            if batch <= sv.small_max:
                torch.testing.assert_close(sv.small(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["dagfm", "dagfm_plus"])
@pytest.mark.parametrize("interaction", ["inner", "outer"])
def test_wide_model_uses_the_factored_small_path(name, interaction):
    """F = 39, D = 16 (Criteo): a dense [F*D, F*D] map would cost more than it saves."""
    m, fm = _model(name, interaction, fields=39, dim=16)
    sv = m.serving_module()
    assert not sv.dense_small and sv.small_max >= 1
    for batch in (1, sv.small_max, sv.small_max + 1):
        x = _rows(fm, batch)
        with torch.no_grad():
            torch.testing.assert_close(m(x), _training_path(m, x), rtol=1e-5, atol=1e-6)


def test_large_lookup_without_transposed_table(monkeypatch):
    """Big tables are not duplicated: the large path then looks rows up and transposes."""
    import kdrec.models.ctr.dagfm_serving as serving

    monkeypatch.setattr(serving, "TRANSPOSED_TABLE_BYTES", 0)
    for interaction in ("inner", "outer"):
        m, fm = _model("dagfm", interaction)
        sv = m.serving_module(small_batch=False)
        assert not sv.transposed_lookup and "table_t" not in sv._buffers
        x = _rows(fm, 64)
        with torch.no_grad():
            torch.testing.assert_close(sv(x), _training_path(m, x), rtol=1e-5, atol=1e-6)


def _fresh_eval(m, x):
    with torch.no_grad():
        return m(x)


@pytest.mark.parametrize("batch", [1, 300])
def test_inference_form_is_rebuilt_when_weights_change(batch):
    m, fm = _model("dagfm_plus", "outer")
    x = _rows(fm, batch)
    before = _fresh_eval(m, x)
    cache = m._serving
    assert cache.get(m) is cache.get(m)  # nothing changed: built once

    # an optimizer step (in-place parameter update)
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m(_rows(fm, 32, seed=5)).sum().backward()
    opt.step()
    m.eval()
    after_step = _fresh_eval(m, x)
    assert not torch.allclose(after_step, before)
    torch.testing.assert_close(after_step, _training_path(m, x), rtol=1e-5, atol=1e-6)

    # load_state_dict of another model's weights
    other, _ = _model("dagfm_plus", "outer", seed=7)
    m.load_state_dict(other.state_dict())
    torch.testing.assert_close(_fresh_eval(m, x), _fresh_eval(other, x), rtol=1e-5, atol=1e-6)

    # an in-place edit of one buffer (batch-norm statistics) and of one parameter
    with torch.no_grad():
        m.mlp[1].running_mean.add_(0.5)
        m.dag.q.mul_(1.5)
    torch.testing.assert_close(_fresh_eval(m, x), _training_path(m, x), rtol=1e-5, atol=1e-6)

    # a replaced submodule (KD-DAGFM hands the student a copy of the teacher's table)
    fresh_table = copy.deepcopy(other.embedding)
    with torch.no_grad():
        fresh_table.weight.mul_(3.0)
    m.embedding = fresh_table
    torch.testing.assert_close(_fresh_eval(m, x), _training_path(m, x), rtol=1e-5, atol=1e-6)

    # a dtype change
    m.double()
    torch.testing.assert_close(_fresh_eval(m, x), _training_path(m, x), rtol=1e-9, atol=1e-12)


def test_serving_form_stays_out_of_the_state_dict_and_autograd():
    m, fm = _model("dagfm", "inner")
    keys = set(m.state_dict())
    x = _rows(fm, 4)
    _fresh_eval(m, x)
    assert set(m.state_dict()) == keys
    m.eval()
    z = m(x)  # eval mode with autograd on: the training path, differentiable
    z.sum().backward()
    assert m.dag.p.grad is not None and m.dag.p.grad.abs().sum() > 0


@pytest.mark.parametrize("name,interaction", [("dagfm", "outer"), ("dagfm_plus", "inner")])
def test_export_writes_the_inference_form(name, interaction, tmp_path):
    from kdrec.stages.export import export_student

    m, fm = _model(name, interaction)
    path = export_student(m, _rows(fm, 8), tmp_path)
    assert path.suffix == ".pt2"
    program = torch.export.load(path)
    assert not any("adj" in k for k in program.state_dict)  # the mask is folded into the maps
    served = program.module()
    for batch in (1, 7, 300):
        x = _rows(fm, batch, seed=batch)
        torch.testing.assert_close(served(x), _training_path(m, x), rtol=1e-5, atol=1e-6)
