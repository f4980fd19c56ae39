"""Retrieval as the CTR task serves it: computed once per (dataset, retrieval settings), cached
under ``<paths.cache>/retrieval/<dataset>-<sig>/``, and turned into per-batch neighbour tensors by
plain indexing.

The search pool is the train split. Train queries never retrieve their own row (excluded by id);
valid/test queries search the whole train pool. With ``time_restricted`` and a split timestamp
``t`` (seconds, one per row), only pool rows strictly earlier than the query are eligible.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from kdrec.artifacts import atomic_write_json, signature
from kdrec.cache import cached_torch
from kdrec.errors import ConfigError
from kdrec.schema import build_dataclass
from kdrec.retrieval.bm25 import FieldBM25, RetrievalConfig, RetrievalStats

log = logging.getLogger("kdrec")

# bump when the algorithm's output changes (invalidates cached retrievals)
RETRIEVAL_VERSION = 1


def retrieval_config(value) -> RetrievalConfig:
    """A model's ``retrieval:`` block (dict / DictConfig / RetrievalConfig) -> checked config."""
    if isinstance(value, RetrievalConfig):
        return value
    from kdrec.models.registry import model_params

    return build_dataclass(RetrievalConfig, model_params(value or {}), "retrieval")


class RetrievalStore:
    """Lazily computes, caches and serves neighbours of every split's rows in the train pool."""

    def __init__(self, data, splits: dict, device: torch.device, cache_dir: Path | None):
        self.data = data
        self.splits = splits  # the task's device-resident splits
        self.device = device
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._results: dict = {}
        self._index: dict = {}

    # ----------------------------------------------------------------- building
    def _times(self, split: str):
        t = getattr(self.data.splits[split], "t", None)
        if t is None:
            raise ConfigError(
                f"retrieval.time_restricted=true but dataset {self.data.feature_map.dataset!r} has no "
                f"timestamps for split {split!r}; set retrieval.time_restricted=false")
        return t.to(self.device)

    def index(self, cfg: RetrievalConfig) -> FieldBM25:
        key = json.dumps(cfg.__dict__, sort_keys=True)
        if key not in self._index:
            fm = self.data.feature_map
            self._index[key] = FieldBM25(self.splits["train"].x, fm.vocab_sizes, fm.field_names, cfg,
                                         self._times("train") if cfg.time_restricted else None)
        return self._index[key]

    def signature(self, cfg: RetrievalConfig) -> str:
        return signature(self.data.feature_map.dataset, getattr(self.data, "signature", ""),
                         cfg.semantic(), RETRIEVAL_VERSION)

    def directory(self, cfg: RetrievalConfig) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{self.data.feature_map.dataset}-{self.signature(cfg)}"

    def search_split(self, cfg: RetrievalConfig, split: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
        idx = self.index(cfg)
        x = self.splits[split].x
        excl = torch.arange(x.shape[0], device=self.device) if split == "train" else None
        qt = self._times(split) if cfg.time_restricted else None
        stats = RetrievalStats()
        ids, scores = idx.search(x, exclude=excl, query_time=qt, stats=stats)
        return ids, scores, stats.as_dict()

    def result(self, cfg: RetrievalConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [N, K] into the train split, -1 padded; scores [N, K]) for every row of ``split``."""
        sig = self.signature(cfg)
        if (sig, split) in self._results:
            return self._results[(sig, split)]
        d = self.directory(cfg)
        path = d / f"{split}.pt" if d is not None else None
        meta = {"rows": len(self.splits[split]), "pool_rows": len(self.splits["train"]),
                "config": cfg.__dict__}

        def compute() -> dict:
            ids, scores, stats = self.search_split(cfg, split)
            log.info("retrieval %s/%s: %d queries in %.1fs (%.0f rows/s, %d dense fallbacks)", sig,
                     split, stats["queries"], stats["seconds"], stats["rows_per_second"],
                     stats["dense_queries"])
            if d is not None:  # beside the entry, written before it (the entry commits last)
                atomic_write_json(d / f"{split}_stats.json", {**stats, "config": cfg.__dict__})
            return {"ids": ids, "scores": scores}

        value = cached_torch(path, compute, meta, what=f"retrieval {sig}/{split}")
        res = (value["ids"].to(self.device), value["scores"].to(self.device))
        self._results[(sig, split)] = res
        return res

    # ----------------------------------------------------------------- serving
    def gather(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Neighbour rows and labels for ids [B, K]: (nbr_x [B, K, F], nbr_y [B, K], -1 = none)."""
        pool = self.splits["train"]
        ok = ids >= 0
        safe = ids.clamp_min(0)
        return pool.x[safe], torch.where(ok, pool.y[safe], torch.full_like(pool.y[safe], -1.0))

    def neighbours(self, cfg: RetrievalConfig, split: str, idx: torch.Tensor, x: torch.Tensor):
        ids, _ = self.result(cfg, split)
        return (x, *self.gather(ids[idx]))

    def live(self, model: nn.Module) -> "LiveRetrieval":
        return LiveRetrieval(model, self)


class LiveRetrieval(nn.Module):
    """``model`` preceded by the retrieval itself, as served online: forward(x) searches the train
    pool for each row (no cache) and feeds the neighbours to the model. Benchmarks profile this so
    a retrieval model's latency includes its retrieval; ``stats`` counts the retrieval work."""

    def __init__(self, model: nn.Module, store: RetrievalStore):
        super().__init__()
        self.model = model
        self.store = store
        self.stats = RetrievalStats()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, _ = serve_search(self.store, self.model.retrieval_config, x, self.stats)
        return self.model(x, *self.store.gather(ids))


def serve_search(store: RetrievalStore, cfg: RetrievalConfig, x: torch.Tensor,
                 stats: RetrievalStats | None = None):
    """Search as served online: a live query comes after every pool row, so a time-restricted
    index sees the whole pool (query time = the largest int64)."""
    qt = None
    if cfg.time_restricted:
        qt = torch.full((x.shape[0],), torch.iinfo(torch.int64).max, dtype=torch.int64, device=x.device)
    return store.index(cfg).search(x, query_time=qt, stats=stats)


def profile_retrieval_model(store: RetrievalStore, model: nn.Module, sample: torch.Tensor,
                            latency: bool = True, repeats: int = 20) -> dict[str, float]:
    """Per-sample cost of a retrieval model *including its retrieval*: FLOPs = the model's counted
    FLOPs on the retrieved neighbours + the retrieval's explicit count (3 per query field per
    scored pair: compare, multiply, add); latency = the live search + the model, at batch 1/4096."""
    from kdrec.bench.flops import count_flops, latency_ms, param_counts

    cfg = model.retrieval_config
    stats = RetrievalStats()
    ids, _ = serve_search(store, cfg, sample, stats)
    out = {**count_flops(model, sample, *store.gather(ids), batch=sample.shape[0]),
           **param_counts(model)}
    out["flops_model"] = out["flops_per_sample"]
    out["flops_retrieval"] = stats.flops_per_query()
    out["retrieval_pairs_per_query"] = (stats.candidate_pairs + stats.dense_pairs) / max(stats.queries, 1)
    out["flops_per_sample"] = out["flops_model"] + out["flops_retrieval"]
    if latency:
        live = LiveRetrieval(model, store)
        big = sample.repeat((4096 + sample.shape[0] - 1) // sample.shape[0], 1)[:4096]
        out["latency_ms_b1"] = latency_ms(live, sample[:1], repeats=repeats * 5)
        out["latency_ms_b4096"] = latency_ms(live, big, repeats=max(3, repeats // 4))
        nb = store.gather(serve_search(store, cfg, sample[:1])[0])
        out["latency_ms_b1_model_only"] = latency_ms(model, sample[:1], *nb, repeats=repeats * 5)
    return out
