"""End-to-end top-K distillation on generated clustered interactions, one run per distiller,
plus teacher-cache reuse, FLOPs profiling and a CLI round trip."""

import json
from pathlib import Path

import pytest
import torch


DISTILLERS = ["none", "rd", "cd", "rrd", "ir_rrd", "de", "de_rrd", "phr", "ftd", "htd", "hetcomp"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def topk_outputs(tmp_path_factory):
    return tmp_path_factory.mktemp("topk-outputs")


_COMPOSE = {}


@pytest.fixture(autouse=True)
def _shared_hydra(compose_cfg):
    """Compose through conftest's session-wide Hydra context (a second context would clash)."""
    _COMPOSE["fn"] = compose_cfg


def topk_cfg(root, *overrides):
    return _COMPOSE["fn"]("experiment=smoke_topk", f"paths.root={root}", "device=cpu", "device.threads=1",
                          *overrides)


def last_run(root):
    """Newest run directory a stage called in-process wrote (under paths.root/runs/in_process)."""
    return max((Path(root) / "runs" / "in_process").iterdir(), key=lambda p: p.stat().st_mtime_ns)


def topk_train_rows(root) -> int:
    from kdrec.runtime import load_data

    return len(load_data(topk_cfg(root)).splits["train"])


def small(name):
    if name == "hetcomp":  # small teachers, short trajectories
        return ["distiller.teacher_train.epochs=4", "distiller.snapshot_every=1", "distiller.p=1",
                "distiller.num_ckpt=3", "distiller.teachers=[{name: mf, embed_dim: 16}, "
                "{name: lightgcn, embed_dim: 12, num_layers: 1}]"]
    return []


@pytest.mark.parametrize("name", DISTILLERS)
def test_smoke_distill(name, topk_outputs, tmp_path, monkeypatch):
    from kdrec.stages.distill import run

    monkeypatch.chdir(tmp_path)
    m = run(topk_cfg(topk_outputs, f"distiller={name}", *small(name)))
    for split in ("valid", "test"):
        for k in ("recall@20", "ndcg@20", "hit@20", "recall@10", "ndcg@50"):
            assert 0.0 <= m[split][k] <= 1.0
    assert m["test"]["recall@20"] > 0.12  # random ranking of 200 items: about 0.1
    if name != "none":
        assert m["teacher"]["test"]["ndcg@20"] > 0.3  # the MF-32 teacher learned the clusters
    rdir = last_run(topk_outputs)
    saved = torch.load(rdir / "student.pt", weights_only=True)
    assert saved["state_dict"]["user_emb.weight"].shape == (300, 8)  # 0.25 x 32
    if name in ("de", "de_rrd", "htd", "phr", "hetcomp"):
        assert saved["aux_state_dict"], "auxiliary modules must be checkpointed"
    assert json.loads((rdir / "metrics.json").read_text())["distiller"] == name


def test_teacher_topn_cached_once(topk_outputs, tmp_path, monkeypatch):
    from kdrec.stages.distill import run
    from kdrec.tasks.topk import TopKTask

    monkeypatch.chdir(tmp_path)
    m = run(topk_cfg(topk_outputs, "distiller=rrd"))
    cache = Path(m["teacher"]["dir"]) / "cache"
    assert any(p.name.startswith("topn_users_items") for p in cache.iterdir())

    def boom(*a, **k):
        raise AssertionError("teacher top-N recomputed instead of read from the cache")

    monkeypatch.setattr(TopKTask, "topn", boom)
    run(topk_cfg(topk_outputs, "distiller=rrd", "seed=43", "teacher_seed=42"))  # same teacher: cache hit


def test_zero_weight_equals_plain_training(topk_outputs, tmp_path, monkeypatch):
    from kdrec.stages.distill import run

    monkeypatch.chdir(tmp_path)
    a = run(topk_cfg(topk_outputs, "distiller=none"))
    b = run(topk_cfg(topk_outputs, "distiller=rrd", "distiller.weight=0.0"))
    # weight 0 is plain BPR training with the same seed: identical result
    assert a["test"]["ndcg@20"] == pytest.approx(b["test"]["ndcg@20"], abs=1e-6)


def test_benchmark_flops_topk(topk_outputs, tmp_path, monkeypatch):
    from kdrec.stages.benchmark_flops import run

    monkeypatch.chdir(tmp_path)
    r = run(topk_cfg(topk_outputs, "teacher=lightgcn", "teacher.embed_dim=40", "teacher.num_layers=2"))
    assert r["student"]["flops_per_sample"] == pytest.approx(2 * 10 * 200)  # MF-10 (0.25 x 40): 2 d per item
    assert r["student"]["params"] == (300 + 200) * 10
    t = r["teacher"]
    # counted on the served ranker's run: one score per item (2 d FLOPs), nothing else per user;
    # LightGCN's propagation is a one-off per set of weights, reported apart
    assert t["flops_matmul"] == pytest.approx(2 * 40 * 200) and t["flops_elementwise"] == 0
    n, d, L = 300 + 200, 40, 2
    nnz = 2 * topk_train_rows(topk_outputs)
    assert t["offline_flops"] == pytest.approx(L * (2 * nnz * d + n * d) + n * d)
    assert t["latency_ms_b4096"] > 0 and t["latency_ms_b1"] > 0 and t["latency_ms_offline"] > 0


def test_misspelled_distiller_key_is_a_clear_error(topk_outputs, tmp_path, monkeypatch):
    from kdrec.stages.distill import run

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        run(topk_cfg(topk_outputs, "distiller=rrd", "+distiller.Kk=3"))
    assert e.value.code == 2


def test_cli_round_trip(cli, outputs):
    cli("distill", "experiment=smoke_topk", "distiller=rrd", "device.threads=1")
    runs = list((outputs / "runs" / "distill").rglob("metrics.json"))
    m = json.loads(runs[0].read_text())
    assert m["distiller"] == "rrd" and m["dataset"] == "synthetic_topk" and "ndcg@20" in m["test"]
