from __future__ import annotations

from torch import nn

from kdrec.models.layers.dropout import Dropout


class MLP(nn.Sequential):
    """Linear -> [BatchNorm] -> activation -> [Dropout] per hidden layer; optional output unit."""

    def __init__(self, in_dim: int, hidden: list[int], dropout: float = 0.0,
                 batch_norm: bool = False, out_dim: int | None = None, activation: str = "relu"):
        layers: list[nn.Module] = []
        act = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[activation]
        d = in_dim
        for h in hidden:
            layers.append(nn.Linear(d, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(act())
            if dropout > 0:
                layers.append(Dropout(dropout))
            d = h
        if out_dim is not None:
            layers.append(nn.Linear(d, out_dim))
            d = out_dim
        super().__init__(*layers)
        self.out_dim = d
