"""Honest FLOPs: bench.flops counts what runs - matrix products (incl. matrix-vector ones) *and* the
elementwise products FlopCounterMode alone misses - checked against closed forms of DAGFM's
inference paths (batch-last large batch, dense small batch) and CIN."""

from __future__ import annotations

import pytest
import torch

from kdrec.bench.flops import count_flops, ratios
from kdrec.models.ctr.dagfm import DAGFM, DAGFMConfig
from kdrec.models.layers.cin import CIN
from kdrec.data.spec import FeatureMap, FieldInfo


def dagfm_large_closed_form(f: int, d: int, t: int, interaction: str) -> tuple[float, float]:
    """Per-sample (matmul, elementwise) FLOPs of DAGFM's large-batch inference path.

    matmul: connection e' = C E (2F^2D), per layer the edge contraction (inner 2F^2D, outer two
    contractions 4F^2D, kernel 2F^2D^2; dense over all F^2 pairs, the DAG mask being folded into
    the weights as zeros), the read-out as one vector per layer over the F*D node states
    (2FD (T+1)). elementwise: per layer h0 * agg (FD)."""
    edge = {"inner": 2 * f * f * d, "outer": 4 * f * f * d, "kernel": 2 * f * f * d * d}[interaction]
    return 2 * f * f * d + t * edge + 2 * f * d * (t + 1), t * f * d


def dagfm_small_closed_form(f: int, d: int, t: int) -> tuple[float, float]:
    """Dense small-batch path, state width W = FD + 1: h~(0) = e K (2 FD W), per layer a [W, W]
    product (2 W^2) and the multiply by h~(0) (W), the final read-out vector (2 W)."""
    w = f * d + 1
    return 2 * f * d * w + t * 2 * w * w + 2 * w, t * w


@pytest.mark.parametrize("interaction", ["inner", "outer", "kernel"])
@pytest.mark.parametrize("f,d,t", [(10, 10, 3), (5, 4, 2)])
def test_dagfm_flops_closed_form(interaction, f, d, t):
    fm = FeatureMap("t", [FieldInfo(f"f{i}", 9) for i in range(f)])
    model = DAGFM(fm, DAGFMConfig(embed_dim=d, interaction=interaction, depth=t))
    small_max = model.serving_module().small_max
    assert small_max >= 1
    batch = small_max + 1  # the large path
    x = torch.randint(0, 9, (batch, f))
    got = count_flops(model, x, batch=batch)
    matmul, elementwise = dagfm_large_closed_form(f, d, t, interaction)
    assert got["flops_matmul"] == pytest.approx(matmul)
    assert got["flops_elementwise"] == pytest.approx(elementwise)
    assert got["flops_per_sample"] == pytest.approx(matmul + elementwise)
    assert got["embedding_lookups"] == f
    one = count_flops(model, x[:1], batch=1)  # the dense small path runs at batch 1
    matmul, elementwise = dagfm_small_closed_form(f, d, t)
    assert one["flops_matmul"] == pytest.approx(matmul)
    assert one["flops_elementwise"] == pytest.approx(elementwise)
    assert one["embedding_lookups"] == f


def test_frappe_outer_student_flops():
    """The KD-DAGFM CrossNet preset on Frappe (F = D = 10, T = 3): 14,800 matrix + 300 elementwise
    FLOPs per sample at large batches, 18.6% of CrossNet(4)'s 81,000."""
    fm = FeatureMap("t", [FieldInfo(f"f{i}", 9) for i in range(10)])
    model = DAGFM(fm, DAGFMConfig(embed_dim=10, interaction="outer", depth=3))
    got = count_flops(model, torch.randint(0, 9, (256, 10)), batch=256)
    assert got["flops_per_sample"] == 15_100


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
