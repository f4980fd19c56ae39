"""The embedded default: a seeded CTR dataset whose labels come from a hidden model of explicit
field interactions of orders 1, 2 and 3, in the function class of DAGFM (Tian et al., WSDM 2023).

The hidden model is a depth-2 DAG factorization machine on its own ``latent_dim``-sized id vectors
``u``: a random sparse DAG over the fields (edge i -> j, i < j, kept with ``edge_density``) with
independent Gaussian edge weights per layer, A (layer 1) and B (layer 2),

    h1_j = u_j * sum_{i<j} A_ij u_i             -> order 2: A_ij <u_i, u_j>
    h2_l = u_l * sum_{j<l} B_jl h1_j            -> order 3: A_ij B_jl sum_k u_ik u_jk u_lk
    z    = order1 * std(sum_f w_f) + order2 * std(sum h1) + order3 * std(sum h2) + noise * N(0, 1)

(std = standardised over the rows, so ``order*`` are the terms' standard deviations), and the label
is Bernoulli(sigmoid(z - c)) with c set so the positive rate is ``positive_rate``. A DAGFM-inner
of depth >= 2 and embedding size >= ``latent_dim`` represents this logit exactly; CIN, CrossNet and
deep models can approximate it; FM and LR cannot (FM has no 3rd order, and weighs every field pair
alike). Ids follow a per-field Zipf law, as real categorical data does. The click probabilities are
known, so the best AUC any model can reach on the test split (the Bayes AUC) is reported in the
feature map (``extra.hidden_model``). Generated in memory, ~0.1 s per 100k rows; no files."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kdrec.artifacts import signature
from kdrec.data.registry import DataPaths, register_dataset
from kdrec.data.spec import CTRDataset, CTRSplit, FeatureMap, FieldInfo
from kdrec.errors import ConfigError
from kdrec.schema import between, ge

# part of the data signature: cached teachers of an older generator are not reused
GENERATOR_VERSION = 2


@dataclass
class SyntheticConfig:
    num_rows: int = field(default=200_000, metadata=ge(10))
    num_fields: int = field(default=10, metadata=ge(3))  # 3rd-order interactions need 3 fields
    vocab_size: int = field(default=100, metadata=ge(2))  # per field
    zipf_exponent: float = field(default=1.1, metadata=ge(0))  # id frequency ~ rank^-exponent
    latent_dim: int = field(default=4, metadata=ge(1))  # size of the hidden model's id vectors
    # share of field pairs i < j joined by an edge of the hidden DAG
    edge_density: float = field(default=0.5, metadata=between(0, 1, lo_open=True))
    order1: float = field(default=0.5, metadata=ge(0))  # standard deviation of each order's term
    order2: float = field(default=1.0, metadata=ge(0))
    order3: float = field(default=1.5, metadata=ge(0))
    noise: float = field(default=0.3, metadata=ge(0))  # Gaussian logit noise (unobserved causes)
    positive_rate: float = field(default=0.3, metadata=between(0, 1, lo_open=True, hi_open=True))
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 2024

    def check(self) -> None:
        if len(self.split) != 3 or any(s <= 0 for s in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ConfigError(f"dataset.split must be three positive fractions summing to 1, not {self.split}")


@dataclass
class HiddenModel:
    """The generator's parameters: first-order weights w [F, V], id vectors u [F, V, k] and the
    two layers' edge weights A, B [F, F] (strictly upper triangular, zero off the DAG)."""

    w: torch.Tensor
    u: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor

    @classmethod
    def draw(cls, cfg: SyntheticConfig, g: torch.Generator) -> "HiddenModel":
        f, v, k = cfg.num_fields, cfg.vocab_size, cfg.latent_dim
        w = torch.randn(f, v, generator=g, dtype=torch.float64)
        u = torch.randn(f, v, k, generator=g, dtype=torch.float64)
        edges = (torch.rand(f, f, generator=g, dtype=torch.float64) < cfg.edge_density).double().triu(1)
        a = edges * torch.randn(f, f, generator=g, dtype=torch.float64)
        b = edges * torch.randn(f, f, generator=g, dtype=torch.float64)
        return cls(w, u, a, b)

    def terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N, F] ids -> the order-1, order-2 and order-3 terms of the logit, each [N]."""
        f, v, k = self.u.shape
        flat = (x + torch.arange(f) * v).reshape(-1)  # row of (field, id) in the [F*V] tables
        first = self.w.reshape(-1).index_select(0, flat).view(-1, f).sum(1)
        h0 = self.u.reshape(f * v, k).index_select(0, flat).view(-1, f, k).transpose(1, 2)  # [N, k, F]
        h1 = h0 * (h0 @ self.a)  # h1_j = u_j * sum_i A_ij u_i, one matmul over all rows and dims
        h2 = h0 * (h1 @ self.b)  # h2_l = u_l * sum_j B_jl h1_j
        return first, h1.sum((1, 2)), h2.sum((1, 2))

    def logit(self, x: torch.Tensor, cfg: SyntheticConfig) -> torch.Tensor:
        """The noiseless hidden logit of rows x: each order's term standardised over these rows."""
        return sum(weight * (t - t.mean()) / t.std().clamp_min(1e-12)
                   for weight, t in zip((cfg.order1, cfg.order2, cfg.order3), self.terms(x)))


def _zipf_ids(cfg: SyntheticConfig, g: torch.Generator) -> torch.Tensor:
    probs = 1.0 / torch.arange(1, cfg.vocab_size + 1, dtype=torch.float64) ** cfg.zipf_exponent
    return torch.multinomial(probs.expand(cfg.num_fields, -1), cfg.num_rows, replacement=True,
                             generator=g).T.contiguous()


def generate(cfg: SyntheticConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, HiddenModel]:
    """ids x [N, F] int64, labels y [N] float32, the true click probabilities p [N] float64 and the
    hidden model that made them."""
    cfg.check()
    g = torch.Generator().manual_seed(cfg.seed)
    x = _zipf_ids(cfg, g)
    hidden = HiddenModel.draw(cfg, g)
    z = hidden.logit(x, cfg) + cfg.noise * torch.randn(cfg.num_rows, generator=g, dtype=torch.float64)
    # the offset that gives the configured positive rate, by bisection on the mean probability
    lo, hi = float(z.min()) - 20.0, float(z.max()) + 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if torch.sigmoid(z - mid).mean() > cfg.positive_rate else (lo, mid)
    p = torch.sigmoid(z - 0.5 * (lo + hi))
    y = torch.bernoulli(p, generator=g).float()
    return x.long(), y, p, hidden


def _bayes_metrics(y: torch.Tensor, p: torch.Tensor) -> dict[str, float]:
    """AUC and logloss of the true probabilities: no model can do better in expectation."""
    from kdrec.eval.metrics import ctr_metrics

    return {k: round(float(v), 5) for k, v in ctr_metrics(y, torch.logit(p).float()).items()}


@register_dataset("synthetic", task="ctr", config=SyntheticConfig)
def build(cfg: SyntheticConfig, paths: DataPaths) -> CTRDataset:
    x, y, p, _ = generate(cfg)
    n = x.shape[0]
    n_train = int(cfg.split[0] * n)
    n_valid = int(cfg.split[1] * n)
    cuts = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n)}
    splits = {k: CTRSplit(x[a:b], y[a:b]) for k, (a, b) in cuts.items()}
    bayes = {k: _bayes_metrics(y[a:b], p[a:b]) for k, (a, b) in cuts.items() if k != "train"}
    fmap = FeatureMap("synthetic", [FieldInfo(f"f{i}", cfg.vocab_size) for i in range(cfg.num_fields)],
                      extra={"hidden_model": {"bayes": bayes}})
    return CTRDataset(fmap, splits, signature=signature({**cfg.__dict__, "generator": GENERATOR_VERSION}))
