"""The chunked CIN (a custom autograd function over row chunks, Z rebuilt in backward) computes
the same outputs and gradients as plain autograd over the whole batch: fp32, bf16 autocast, and
torch.autograd.gradcheck in float64; with chunks of one sample, a ragged last chunk and one chunk."""

from __future__ import annotations

import pytest
import torch

from kdrec.models.layers.cin import CIN


def reference(cin: CIN, e: torch.Tensor) -> torch.Tensor:
    """Plain autograd, whole batch, [B, H, D] layout: X^k_h = sum_(i,j) W_h,(i,j) X^{k-1}_i X^0_j + b_h."""
    x, pooled = e, []
    for w, bias in zip(cin.weights, cin.biases):
        z = (x[:, :, None, :] * e[:, None, :, :]).flatten(1, 2)  # [B, H_prev*F, D], (i, j) order
        x = torch.matmul(w, z) + bias[:, None]  # autocast runs this product in bf16, as CIN does
        pooled.append(x.sum(-1))
    return torch.cat(pooled, 1)


def outputs_and_grads(cin: CIN, e: torch.Tensor, head: torch.Tensor, forward, autocast: bool):
    """Forward under (optional) CPU bf16 autocast, a loss mixing every layer's pooled maps, and the
    gradients w.r.t. the embeddings, every weight and every bias."""
    e = e.detach().clone().requires_grad_(True)
    cin.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = forward(cin, e)
    (out.float() * head).sum().backward()
    return out.detach().float(), [e.grad, *(w.grad for w in cin.weights), *(b.grad for b in cin.biases)]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def chunked_with(samples: int):
    def forward(cin: CIN, e: torch.Tensor) -> torch.Tensor:
        cin.chunk_rows = lambda dim: samples * dim  # instance override of the cache-sized default
        try:
            return cin(e)
        finally:
            del cin.chunk_rows
    return forward


# batch 11: chunks of 1 sample, of 4 (ragged last chunk: 4+4+3), and one chunk for everything
@pytest.mark.parametrize("samples", [1, 4, 11, 64])
@pytest.mark.parametrize("autocast,tol", [(False, 1e-5), (True, 2e-2)])
def test_chunked_matches_plain_autograd(samples, autocast, tol):
    torch.manual_seed(0)
    f, d, b = 5, 6, 11
    cin = CIN(f, [7, 4, 3])
    e = torch.randn(b, f, d)
    head = torch.randn(b, cin.out_dim)
    out, grads = outputs_and_grads(cin, e, head, chunked_with(samples), autocast)
    ref_out, ref_grads = outputs_and_grads(cin, e, head, reference, autocast)
    assert rel(out, ref_out) < tol
    for g, r in zip(grads, ref_grads):
        assert g is not None and rel(g, r) < tol
    # the tolerance is tight enough to notice a missing term: without any one layer's pooled maps in
    # the loss, or without a bias, the reference gradients move by far more than tol
    for k in range(len(cin.layer_sizes)):
        top = sum(cin.layer_sizes[:k])
        cut = head.clone()
        cut[:, top:top + cin.layer_sizes[k]] = 0
        _, cut_grads = outputs_and_grads(cin, e, cut, reference, autocast)
        assert rel(cut_grads[0], ref_grads[0]) > 10 * tol
    if autocast:  # bf16 forward agrees with the fp32 one to bf16 precision, not exactly
        fp32_out, fp32_grads = outputs_and_grads(cin, e, head, reference, False)
        assert rel(out, fp32_out) < tol and all(rel(g, r) < tol for g, r in zip(grads, fp32_grads))


def test_chunked_matches_unchunked_path_used_by_tracers():
    torch.manual_seed(1)
    cin = CIN(4, [5, 3])
    e = torch.randn(9, 4, 3)
    e0 = e.transpose(1, 2).reshape(-1, 4).t().contiguous()
    torch.testing.assert_close(chunked_with(2)(cin, e), cin.unchunked(e0, 3).t(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cin(e), reference(cin, e), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("samples", [1, 2, 3])
def test_gradcheck_float64(samples):
    torch.manual_seed(2)
    cin = CIN(3, [2, 3]).double()
    e = torch.randn(3, 3, 2, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in cin.named_parameters()]

    def fn(e, *params):  # parameters swapped in, so that gradcheck differentiates w.r.t. them
        cin.chunk_rows = lambda dim: samples * dim
        try:
            return torch.func.functional_call(cin, dict(zip(names, params)), (e,))
        finally:
            del cin.chunk_rows

    params = [p.detach().clone().requires_grad_(True) for p in cin.parameters()]
    assert torch.autograd.gradcheck(fn, (e, *params), eps=1e-6, atol=1e-6)
