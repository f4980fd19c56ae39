"""`kdrec data`: encode the configured dataset (or read its cache) and print what is in it:
rows and positive rate per split, and per field its vocabulary size and OOV / missing shares."""

from __future__ import annotations

import time

import hydra
import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from kdrec.artifacts import atomic_write_json
from kdrec.config import config_dir
from kdrec.data.spec import MISSING_ID, OOV_ID, CTRDataset
from kdrec.config import check_config
from kdrec.runtime import load_data, run_dir, save_config
from kdrec.stages.output import guarded


def summarize(data) -> dict:
    """Plain-dict summary of a loaded dataset (computed from its tensors, vectorized)."""
    if not isinstance(data, CTRDataset):
        return {"splits": {k: {"rows": len(v)} for k, v in getattr(data, "splits", {}).items()}}
    fmap = data.feature_map
    out = {"dataset": fmap.dataset, "signature": data.signature, "reserved_ids": "oov_id" in fmap.extra,
           "cache_dir": str(data.source_dir) if data.source_dir else None, "splits": {}, "fields": []}
    shares = {}
    for name, split in data.splits.items():
        n = len(split)
        out["splits"][name] = {"rows": n, "positive_rate": float(split.y.mean()) if n else float("nan")}
        shares[name] = ((split.x == OOV_ID).float().mean(0), (split.x == MISSING_ID).float().mean(0))
    for i, f in enumerate(fmap.fields):
        row = {"name": f.name, "kind": f.kind, "vocab_size": f.vocab_size}
        if not out["reserved_ids"]:  # e.g. synthetic: every id is a real value
            out["fields"].append(row)
            continue
        for name, (oov, miss) in shares.items():
            row[f"oov_{name}"] = float(oov[i]) if oov.numel() else 0.0
            row[f"missing_{name}"] = float(miss[i]) if miss.numel() else 0.0
        out["fields"].append(row)
    return out


def print_summary(s: dict, seconds: float, console: Console) -> None:
    if "fields" not in s:
        console.print(s)
        return
    t = Table(title=f"{s['dataset']} ({s['signature']}) loaded in {seconds:.2f}s")
    for c in ("split", "rows", "positive rate"):
        t.add_column(c, justify="right" if c != "split" else "left")
    for name, v in s["splits"].items():
        t.add_row(name, f"{v['rows']:,}", f"{v['positive_rate']:.4f}")
    console.print(t)
    splits = list(s["splits"])
    f = Table(title=f"{len(s['fields'])} fields, {sum(r['vocab_size'] for r in s['fields']):,} ids"
                    + (" (id 0 = OOV/rare, 1 = missing)" if s.get("reserved_ids") else ""))
    f.add_column("field")
    f.add_column("kind")
    f.add_column("vocab", justify="right")
    for sp in splits:
        f.add_column(f"OOV {sp}", justify="right")
    f.add_column("missing (max)", justify="right")
    for r in s["fields"]:
        if f"oov_{splits[0]}" not in r:
            f.add_row(r["name"], r["kind"], f"{r['vocab_size']:,}", *["-"] * (len(splits) + 1))
            continue
        miss = max(r[f"missing_{sp}"] for sp in splits)
        f.add_row(r["name"], r["kind"], f"{r['vocab_size']:,}", *[f"{100 * r[f'oov_{sp}']:.2f}%" for sp in splits],
                  f"{100 * miss:.2f}%")
    console.print(f)
    console.print(f"cache: {s['cache_dir']}")


@guarded
def run(cfg: DictConfig) -> dict:
    check_config(cfg)
    torch.set_num_threads(max(1, int(cfg.device.get("threads") or torch.get_num_threads())))
    t0 = time.perf_counter()
    data = load_data(cfg)
    seconds = time.perf_counter() - t0
    s = summarize(data)
    s["load_seconds"] = seconds
    out = run_dir(cfg)
    save_config(out / "config_resolved.yaml", cfg)
    atomic_write_json(out / "data_summary.json", s)
    print_summary(s, seconds, Console(width=max(Console().width, 100)))
    return s


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)
