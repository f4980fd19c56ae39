"""Feature spec (what a dataset declares) and feature map (what encoding learned), FuxiCTR-style.

A CTR split is served as one int64 tensor ``x`` of shape [N, F] holding per-field *local* ids in
``0 .. vocab_size-1`` plus a float tensor ``y`` of shape [N]. Id 0 of every categorical field is
reserved for out-of-vocabulary / rare values and id 1 for missing values, so a model never sees an
index outside its table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

OOV_ID = 0
MISSING_ID = 1
RESERVED_IDS = 2


@dataclass(frozen=True)
class FieldInfo:
    name: str
    vocab_size: int
    kind: str = "categorical"  # categorical | numeric (bucketed to categorical ids)


@dataclass
class FeatureMap:
    """Field order and vocabulary sizes; saved as ``feature_map.json`` beside the encoded data."""

    dataset: str
    fields: list[FieldInfo]
    label: str = "label"
    extra: dict = field(default_factory=dict)

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    @property
    def vocab_sizes(self) -> list[int]:
        return [f.vocab_size for f in self.fields]

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "label": self.label,
                "fields": [asdict(f) for f in self.fields], "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureMap":
        return cls(dataset=d["dataset"], label=d.get("label", "label"),
                   fields=[FieldInfo(**f) for f in d["fields"]], extra=d.get("extra", {}))

    def save(self, path: Path) -> None:
        from kdrec.artifacts import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> "FeatureMap":
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class CTRSplit:
    x: torch.Tensor  # int64 [N, F] local ids per field
    y: torch.Tensor  # float32 [N] in {0, 1}
    t: torch.Tensor | None = None  # int64 [N] event time (unix seconds) where the source has one

    def __len__(self) -> int:
        return self.y.shape[0]

    def to(self, device) -> "CTRSplit":
        return CTRSplit(self.x.to(device), self.y.to(device), None if self.t is None else self.t.to(device))


@dataclass
class CTRDataset:
    feature_map: FeatureMap
    splits: dict[str, CTRSplit]  # "train", "valid", "test"
    source_dir: Path | None = None  # where the encoded parquet + feature_map.json live
    signature: str = ""  # content hash of sources + preprocessing config

    def __getitem__(self, split: str) -> CTRSplit:
        return self.splits[split]
