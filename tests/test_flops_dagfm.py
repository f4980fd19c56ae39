"""Honest FLOPs: bench.flops must count the einsum contractions *and* the elementwise products of
DAGFM and CIN (which FlopCounterMode alone misses); checked against closed forms."""

from __future__ import annotations

import pytest
import torch

from kdrec.bench.flops import count_flops, ratios
from kdrec.models.ctr.dagfm import DAGFM, DAGFMConfig
from kdrec.models.layers.cin import CIN
from kdrec.data.spec import FeatureMap, FieldInfo


def dagfm_closed_form(f: int, d: int, t: int, interaction: str, batch: int) -> tuple[float, float]:
    """Per-sample (matmul, elementwise) FLOPs of DAGFM's interaction + read-out as implemented.

    matmul: connection e' = C E (2F^2D), per layer the edge contraction (inner 2F^2D, outer two
    contractions 4F^2D, kernel 2F^2D^2, dense over all F^2 pairs: the masked ones are multiplied
    by zero), read-out 2F(T+1). elementwise: per layer h0 * agg (FD), the sum over D of every
    layer's node states ((T+1)FD), and the weight mask (F^2D or F^2D^2 per layer per *batch*)."""
    edge = {"inner": 2 * f * f * d, "outer": 4 * f * f * d, "kernel": 2 * f * f * d * d}[interaction]
    mask = f * f * d * d if interaction == "kernel" else f * f * d
    matmul = 2 * f * f * d + t * edge + 2 * f * (t + 1)
    elementwise = t * f * d + (t + 1) * f * d + t * mask / batch
    return matmul, elementwise


@pytest.mark.parametrize("interaction", ["inner", "outer", "kernel"])
@pytest.mark.parametrize("f,d,t", [(10, 10, 3), (5, 4, 2)])
def test_dagfm_flops_closed_form(interaction, f, d, t):
    fm = FeatureMap("t", [FieldInfo(f"f{i}", 9) for i in range(f)])
    model = DAGFM(fm, DAGFMConfig(embed_dim=d, interaction=interaction, depth=t))
    batch = 32
    x = torch.randint(0, 9, (batch, f))
    got = count_flops(model, x, batch=batch)
    matmul, elementwise = dagfm_closed_form(f, d, t, interaction, batch)
    assert got["flops_matmul"] == pytest.approx(matmul)
    assert got["flops_elementwise"] == pytest.approx(elementwise)
    assert got["flops_per_sample"] == pytest.approx(matmul + elementwise)
    assert got["embedding_lookups"] == f


def test_cin_elementwise_outer_products_are_counted():
    """CIN layer k: H_{k-1} F D products (outer product), 2 H_k H_{k-1} F D in the compression,
    H_k D bias adds and H_k D for the sum pooling."""
    torch.manual_seed(0)
    f, d, sizes, batch = 6, 5, [7, 3], 16
    cin = CIN(f, sizes)
    e = torch.randn(batch, f, d)
    got = count_flops(cin, e, batch=batch)
    prev, matmul, elementwise = f, 0, 0
    for h in sizes:
        elementwise += prev * f * d + h * d + h * d
        matmul += 2 * h * prev * f * d
        prev = h
    assert got["flops_matmul"] == pytest.approx(matmul)
    assert got["flops_elementwise"] == pytest.approx(elementwise)


def test_ratios_of_student_and_teacher():
    s = {"flops_per_sample": 10.0, "params": 5, "dense_params": 1}
    t = {"flops_per_sample": 40.0, "params": 50, "dense_params": 4}
    r = ratios(s, t)
    assert r["flops_per_sample_ratio"] == 0.25 and r["params_ratio"] == 0.1 and r["dense_params_ratio"] == 0.25
