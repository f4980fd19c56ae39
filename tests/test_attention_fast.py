"""AutoInt's field self-attention through its custom autograd function gives the outputs and
gradients of the plain einsum/softmax form (fp32, bf16 autocast, gradcheck in float64), with the
same dropout law, and keeps the parameter layout (qkv, residual, norm) of existing checkpoints."""

from __future__ import annotations

import pytest
import torch

from kdrec.models.layers import attention as attention_mod
from kdrec.models.layers.attention import FieldSelfAttention
from kdrec.models.layers.dropout import keep_mask


def plain(layer: FieldSelfAttention, e: torch.Tensor, keep_t: torch.Tensor | None = None) -> torch.Tensor:
    """The layer with its attention in plain autograd ops; ``keep_t`` [B*H, J, I] is a dropout mask."""
    qkv = layer.qkv(e)
    if keep_t is None:
        out = layer.plain_attention(qkv)
    else:
        b, f, _ = qkv.shape
        q, k, v = qkv.view(b, f, 3, layer.heads, layer.head_dim).unbind(2)
        attn = torch.softmax(torch.einsum("bihd,bjhd->bhij", q, k) * layer.scale, dim=-1)
        attn = attn * keep_t.view(b, layer.heads, f, f).transpose(2, 3)
        out = torch.einsum("bhij,bjhd->bihd", attn, v).reshape(b, f, -1)
    if layer.residual is not None:
        out = out + layer.residual(e)
    return layer.norm(torch.relu(out))


def run(layer, e, head, forward, autocast):
    e = e.detach().clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = forward(layer, e)
    (out.float() * head).sum().backward()
    return out.detach().float(), [e.grad] + [p.grad for p in layer.parameters()]


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("use_scale,layer_norm,use_residual", [(False, False, True), (True, True, True),
                                                               (True, False, False)])
def test_fast_attention_matches_plain_form(use_scale, layer_norm, use_residual):
    autocast, tol = False, 1e-5
    torch.manual_seed(0)
    layer = FieldSelfAttention(12, 16, 4, 0.0, use_residual, use_scale, layer_norm).train()
    e = torch.randn(37, 7, 12)
    head = torch.randn(37, 7, 16)
    out, grads = run(layer, e, head, lambda m, x: m(x), autocast)
    ref_out, ref_grads = run(layer, e, head, plain, autocast)
    assert rel(out, ref_out) < tol
    assert len(grads) == len(ref_grads) and all(g is not None for g in grads)
    for g, r in zip(grads, ref_grads):
        assert rel(g, r) < tol
    # tol is far below what a missing gradient term would cost: without the attention's own
    # contribution (v only through the residual) the input gradient moves by more than 10 tol
    if use_residual:
        no_attn = lambda m, x: m.norm(torch.relu(m.residual(x) + 0 * m.qkv(x)[..., :16]))  # noqa: E731
        _, cut = run(layer, e, head, no_attn, autocast)
        assert rel(cut[0], ref_grads[0]) > 10 * tol


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_bf16_autocast_core_matches_plain_form(scale):
    """Under CPU bf16 autocast (as the presets train): the attention alone, qkv -> out, against
    the einsum form run under the same autocast. (Whole layers are compared in fp32 only: in bf16 a
    last-bit difference can flip a ReLU, which moves a tiny test's gradients by percents.)"""
    torch.manual_seed(3)
    layer = FieldSelfAttention(16, 32, 4, 0.0, False, scale != 1.0, False)
    qkv = torch.randn(64, 10, 96)
    head = torch.randn(64, 10, 32)
    results = []
    for form in (lambda x: attention_mod._FieldAttention.apply(x, 4, layer.scale, None), layer.plain_attention):
        x = qkv.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = form(x.bfloat16())
        assert out.dtype == torch.bfloat16
        (out.float() * head).sum().backward()
        results.append((out.float(), x.grad))
    (out, grad), (ref_out, ref_grad) = results
    assert rel(out, ref_out) < 1e-2 and rel(grad, ref_grad) < 1e-2
    # the q/k part of the gradient (through the softmax) is what a slip would lose: it alone is
    # far larger than the tolerance
    assert ref_grad[..., :64].norm() / ref_grad.norm() > 0.1


def test_dropout_on_attention_weights_uses_the_same_law():
    """Training with dropout: the mask is drawn as keep_mask over [B*H, J, I] right after the
    projection; the same draw applied to the plain form gives the same outputs and gradients."""
    torch.manual_seed(1)
    layer = FieldSelfAttention(8, 8, 2, 0.3, True, True, False).train()
    e = torch.randn(9, 5, 8)
    head = torch.randn(9, 5, 8)
    torch.manual_seed(5)
    out, grads = run(layer, e, head, lambda m, x: m(x), False)
    torch.manual_seed(5)
    keep_t = keep_mask(torch.empty(9 * 2, 5, 5), 0.3)
    assert (keep_t == 0).any() and (keep_t > 1).any()
    ref_out, ref_grads = run(layer, e, head, lambda m, x: plain(m, x, keep_t), False)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
    layer.eval()  # no dropout at evaluation
    with torch.no_grad():
        torch.testing.assert_close(layer(e), plain(layer, e), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_gradcheck_float64(scale):
    torch.manual_seed(2)
    qkv = torch.randn(3, 4, 3 * 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: attention_mod._FieldAttention.apply(x, 2, scale, None), (qkv,))
    keep = keep_mask(torch.empty(3 * 2, 4, 4, dtype=torch.float64), 0.25)
    assert torch.autograd.gradcheck(lambda x: attention_mod._FieldAttention.apply(x, 2, scale, keep), (qkv,))


def test_state_dict_layout_unchanged():
    """Cached AutoInt teachers were saved with these keys and shapes; they must still load."""
    layer = FieldSelfAttention(10, 128, 4, 0.1, True, True, True)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == {"qkv.weight": (384, 10), "residual.weight": (128, 10),
                      "norm.weight": (128,), "norm.bias": (128,)}
