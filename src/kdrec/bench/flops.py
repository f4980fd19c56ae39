"""Per-sample cost of a model: FLOPs, embedding lookups, parameters, CPU latency.

FLOPs are counted on the operators that actually run in an eval-mode, no-grad forward pass at the
given batch size (a model with an inference form, such as DAGFM, runs that form: its large-batch
layout at the profiling batch, its dense small-batch form at batch 1; a warm-up call builds such
forms first, so their one-off construction is not counted):

* matrix products: 2 x multiply-adds, from ``torch.utils.flop_counter`` (mm, bmm, addmm, baddbmm,
  einsum lowered to bmm) plus matrix-vector products (mv, addmv), counted here;
* elementwise multiplies/adds/subtractions/divisions (one per output element) and sum/mean
  reductions (one per input element), counted here by a dispatch mode.

Not counted: bias adds fused into addmm/addmv, activations (ReLU, sigmoid, tanh), softmax,
normalisation (batch/layer norm), copies and layout changes, and integer index arithmetic.
Embedding lookups are gathers, not FLOPs: they are reported in their own column (rows gathered
per sample).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten

# one FLOP per output element
_POINTWISE = {aten.mul.Tensor, aten.add.Tensor, aten.sub.Tensor, aten.div.Tensor, aten.mul_.Tensor,
              aten.add_.Tensor, aten.sub_.Tensor, aten.div_.Tensor, aten.rsub.Scalar,
              aten.mul.Scalar, aten.add.Scalar, aten.div.Scalar, aten.pow.Tensor_Scalar,
              aten.addcmul.default, aten.mul.out, aten.add.out}
# one FLOP per input element (n-1 adds, rounded up)
_REDUCTIONS = {aten.sum.dim_IntList, aten.sum.default, aten.mean.dim, aten.mean.default,
               aten.sum.IntList_out}
_GATHERS = {aten.embedding.default, aten.index_select.default}
# matrix-vector products (FlopCounterMode counts mm/bmm/addmm/baddbmm but not these)
_MATVEC = {aten.mv.default, aten.addmv.default}


class _ElementwiseCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.flops = 0
        self.matvec = 0
        self.lookups = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and not out.is_floating_point() and func not in _GATHERS:
            return out  # index arithmetic (embedding offsets) is not model compute
        if func in _POINTWISE and isinstance(out, torch.Tensor):
            self.flops += out.numel()
        elif func in _REDUCTIONS and isinstance(args[0], torch.Tensor):
            self.flops += args[0].numel()
        elif func in _MATVEC:
            mat = args[1] if func is aten.addmv.default else args[0]
            self.matvec += 2 * mat.numel()
        elif func is aten.embedding.default:
            self.lookups += args[1].numel()  # one row per index
        elif func is aten.index_select.default:
            self.lookups += args[2].numel()
        return out


@torch.no_grad()
def count_flops(model: nn.Module, *inputs: torch.Tensor, batch: int) -> dict[str, float]:
    """Per-sample FLOPs of one eval-mode forward pass over ``inputs`` holding ``batch`` samples."""
    was_training = model.training
    model.eval()
    model(*inputs)  # builds an inference form once, outside the count
    fc = FlopCounterMode(display=False)
    ew = _ElementwiseCounter()
    with fc, ew:
        model(*inputs)
    model.train(was_training)
    matmul = (fc.get_total_flops() + ew.matvec) / batch
    elementwise = ew.flops / batch
    return {"flops_per_sample": matmul + elementwise, "flops_matmul": matmul,
            "flops_elementwise": elementwise, "embedding_lookups": ew.lookups / batch}


def param_counts(model: nn.Module) -> dict[str, int]:
    params = {id(p): p for p in model.parameters()}
    emb_ids = set()
    for m in model.modules():
        if hasattr(m, "offsets") and isinstance(getattr(m, "weight", None), nn.Parameter):
            emb_ids.add(id(m.weight))
        elif isinstance(m, nn.Embedding):
            emb_ids.add(id(m.weight))
    emb = sum(p.numel() for i, p in params.items() if i in emb_ids)
    total = sum(p.numel() for p in params.values())
    return {"params": total, "embedding_params": emb, "dense_params": total - emb}


@torch.no_grad()
def latency_ms(model: nn.Module, *inputs: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of one forward pass over ``inputs`` in milliseconds."""
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if inputs[0].is_cuda else (lambda: None)
    for _ in range(warmup):
        model(*inputs)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(*inputs)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    model.train(was_training)
    return statistics.median(times)


def profile_model(model: nn.Module, sample: torch.Tensor, latency: bool = True,
                  repeats: int = 20) -> dict[str, float]:
    """FLOPs on ``sample`` rows (and on one row: ``flops_per_sample_b1``, what runs at batch 1),
    params, and latency at batch 1 and 4096 (rows tiled if needed)."""
    out = {**count_flops(model, sample, batch=sample.shape[0]), **param_counts(model)}
    out["flops_per_sample_b1"] = count_flops(model, sample[:1], batch=1)["flops_per_sample"]
    if latency:
        big = sample.repeat((4096 + sample.shape[0] - 1) // sample.shape[0], 1)[:4096]
        out["latency_ms_b1"] = latency_ms(model, sample[:1], repeats=repeats * 5)
        out["latency_ms_b4096"] = latency_ms(model, big, repeats=repeats)
    return out


def ratios(student: dict, teacher: dict) -> dict[str, float]:
    keys = ["flops_per_sample", "flops_per_sample_b1", "params", "dense_params", "latency_ms_b1",
            "latency_ms_b4096"]
    return {f"{k}_ratio": student[k] / teacher[k] for k in keys
            if k in student and k in teacher and teacher[k]}
