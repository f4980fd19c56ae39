"""An inference form of a model, built once from its weights and rebuilt when they change.

Some models serve faster from tensors derived from their parameters (DAGFM: per-layer edge maps
with the DAG mask already applied, the read-out spread over the node states). Deriving them on
every call is the overhead to avoid; keeping them forever would serve stale weights after further
training or ``load_state_dict``. So the cache remembers every parameter and buffer it was built
from, with its storage pointer and version counter:

* an optimizer step, ``load_state_dict`` (in-place ``copy_``) or any in-place edit bumps a version;
* ``.to()`` / ``param.data = ...`` changes a storage pointer;
* assigning a new parameter, buffer or submodule anywhere is seen by torch's global registration
  hooks, which advance a generation counter; a changed generation makes the next call compare the
  model's current tensors with the remembered ones (by identity: the cache holds the tensors
  themselves, so a freed tensor's address cannot be reused by a new one that would pass for it).

Checking the remembered tensors costs a few microseconds, which matters on a path that serves a
single row in about twenty.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.modules import module as _module

_generation = [0]


def _registered(*_args) -> None:
    _generation[0] += 1


_module.register_module_parameter_registration_hook(_registered)
_module.register_module_buffer_registration_hook(_registered)
_module.register_module_module_registration_hook(_registered)


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer of ``model`` and its submodules (shared ones repeated)."""
    out: list[torch.Tensor] = []
    stack = [model]
    while stack:
        m = stack.pop()
        out.extend(t for t in m._parameters.values() if t is not None)
        out.extend(t for t in m._buffers.values() if t is not None)
        stack.extend(m._modules.values())
    return out


_is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)


def serving_mode(module: nn.Module) -> bool:
    """True where a model may use its inference form: eval mode, no autograd, not being traced
    (a tracer sees the plain training-path graph)."""
    return not (module.training or torch.is_grad_enabled() or torch.compiler.is_compiling()
                or _is_exporting())


class InferenceCache:
    """``get(model)`` returns ``build(model)``, rebuilt only when a parameter or buffer changed.

    A plain object (not an ``nn.Module``), so the derived tensors never enter the state dict."""

    def __init__(self, build: Callable[[nn.Module], nn.Module]):
        self.build = build
        self.key: list[tuple[torch.Tensor, int, int]] = []
        self.generation = -1
        self.value: nn.Module | None = None

    def fresh(self, model: nn.Module) -> bool:
        if self.value is None:
            return False
        if self.generation != _generation[0]:  # something was (re)registered somewhere
            tensors = _tensors(model)
            if len(tensors) != len(self.key) or any(t is not k for t, (k, _, _) in zip(tensors, self.key)):
                return False
            self.generation = _generation[0]
        return all(t.data_ptr() == ptr and t._version == v for t, ptr, v in self.key)

    def get(self, model: nn.Module) -> nn.Module:
        if not self.fresh(model):
            with torch.no_grad():
                self.value = self.build(model)
            self.generation = _generation[0]
            self.key = [(t, t.data_ptr(), t._version) for t in _tensors(model)]
        return self.value

    def __deepcopy__(self, memo):  # a copied model builds its own
        return InferenceCache(self.build)
