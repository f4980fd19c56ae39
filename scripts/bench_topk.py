"""Top-K cost benchmarks (issue 12 items 3-5): training epoch, full-ranking evaluation, distiller
overhead. Run each under ``cpu-exclusive`` on an otherwise idle machine; every figure printed is
measured in this process (nothing hard-coded).

    # seconds per training epoch (timed over the first --batches batches, extrapolated to the epoch)
    .venv/bin/python scripts/bench_topk.py epoch --experiment topk_gowalla_lightgcn --role teacher \
        --threads 2 --batch-size 2048 --batches 30
    # full-ranking evaluation of the valid split (Gowalla: 29,858 users x 40,981 items)
    .venv/bin/python scripts/bench_topk.py eval --experiment topk_gowalla_mf --threads 2
    # a distiller's run vs the student alone, same settings (setup + --epochs epochs with evaluation)
    .venv/bin/python scripts/bench_topk.py distill --experiment topk_ml100k --threads 1 --epochs 5 \
        --distillers none rd cd rrd ir_rrd de de_rrd phr ftd htd hetcomp
    # serving: the student's and the teacher's TopKRanker, 1 and 4096 users per request,
    # interleaved rounds (issue 12 item 1); --compare-with times another ranking.py alike
    .venv/bin/python scripts/bench_topk.py serve --experiment topk_gowalla_mf --threads 1 --rounds 15
    # HetComp's training step (BPR + KD, backward, Adam) on the preset's batches, overall and
    # listwise loss, its teacher trajectories replaced by random top-K lists (the cost does not
    # depend on them); PYTHONPATH=<worktree>/src times an earlier commit's HetComp the same way
    .venv/bin/python scripts/bench_topk.py hetcomp-step --experiment topk_gowalla_mf --threads 1 \
        --batches 12 -- distiller=hetcomp_gowalla
    # the same past DE's / HTD's temperature annealing (Gumbel-softmax weights one-hot)
    .venv/bin/python scripts/bench_topk.py distill --experiment topk_ml100k --threads 1 --epochs 2 \
        --distillers de de_rrd htd --kd-overrides T_start=1e-4

``--device cuda`` runs any of them on a GPU (timings wait for its queued kernels). Models are
freshly initialised from the preset's yamls. The distill bench's teacher is random
too unless ``--teacher-dir`` names a trained one: HTD's group sizes, and so its cost, depend on
the teacher (a fresh MF teacher's N(0, 1e-4) rows put every entity in one group). Its caches live
in a temporary directory, except HetComp's teacher trajectories (cached under ``--outputs``, as a
real run caches them; the first run pays for training them and says so). Hydra overrides go
after ``--``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from kdrec.artifacts import torch_load
from kdrec.config import config_dir, train_config
from kdrec.data.registry import DataPaths, load_dataset
from kdrec.distill.base import DistillContext, Phase, build_distiller, unique_params
from kdrec.models.registry import build_model
from kdrec.tasks.topk import TopKTask


def compose_cfg(experiment: str, overrides: list[str], outputs: str):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("config", [f"experiment={experiment}", f"paths.root={outputs}", *overrides])


DEVICE = torch.device("cpu")  # --device


def make_task(cfg, batch_size: int) -> TopKTask:
    data = load_dataset(cfg.dataset, DataPaths(Path(cfg.paths.data_root), Path(cfg.paths.cache) / "data"))
    return TopKTask(data, DEVICE, batch_size, cfg.trainer.eval_batch_size)


def now() -> float:
    """perf_counter once the device's queued kernels have run (CUDA launches are asynchronous)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)
    return time.perf_counter()


def bench_epoch(a, cfg) -> dict:
    model_cfg = cfg[a.role]
    tc = train_config(cfg, model_cfg)
    bs = a.batch_size or tc.batch_size
    task = make_task(cfg, bs)
    torch.manual_seed(0)
    model = build_model(model_cfg, task.feature_map, where=a.role).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                           **{"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[a.adam])
    n_rows = task.num_rows("train")
    n_batches = math.ceil(n_rows / bs)
    gen = torch.Generator().manual_seed(0)
    t0 = now()
    it = task.train_batches(gen, bs, tc.negatives)
    batch = next(it)  # the epoch's permutation (and its negatives, with one per positive) happen here
    t_sample = now() - t0
    times = []
    for i in range(a.batches + 1):
        t1 = now()
        loss = task.task_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        batch = next(it, None)  # timed: with several negatives per positive they are drawn batch by batch
        times.append(now() - t1)
        if batch is None:
            break
    step = statistics.mean(times[1:]) if len(times) > 1 else times[0]  # first step: warm-up
    return {"bench": "epoch", "experiment": a.experiment, "role": a.role, "model": model_cfg.name,
            "dim": model.embed_dim, "device": str(DEVICE), "threads": torch.get_num_threads(), "batch_size": bs,
            "negatives": tc.negatives,
            "adam": a.adam,
            "train_rows": n_rows, "batches_per_epoch": n_batches, "timed_batches": len(times) - 1,
            "sampling_s": round(t_sample, 3), "step_ms": round(step * 1e3, 2),
            "epoch_s": round(t_sample + step * n_batches, 2)}


def bench_eval(a, cfg) -> dict:
    task = make_task(cfg, 2048)
    torch.manual_seed(0)
    model = build_model(cfg[a.role], task.feature_map, where=a.role).to(DEVICE)
    task.evaluate(model, a.split)  # warm-up
    ts = []
    for _ in range(a.repeats):
        t0 = now()
        task.evaluate(model, a.split)
        ts.append(now() - t0)
    U, I = task.embeddings(model)
    return {"bench": "eval", "experiment": a.experiment, "split": a.split, "model": cfg[a.role].name,
            "dim": model.embed_dim, "device": str(DEVICE), "threads": torch.get_num_threads(),
            "users": int(task.csr[a.split].nonempty), "items": int(I.shape[0]),
            "eval_s_median": round(statistics.median(ts), 3), "eval_s_all": [round(t, 3) for t in ts]}


def bench_hetcomp_step(a, cfg) -> list[dict]:
    from kdrec.distill.topk.hetcomp import HetComp

    if cfg.distiller.name != "hetcomp":
        raise SystemExit("hetcomp-step: pass a HetComp distiller, e.g. -- distiller=hetcomp_gowalla")
    tc = train_config(cfg, cfg.student)
    bs = a.batch_size or tc.batch_size
    task = make_task(cfg, bs)
    torch.manual_seed(0)
    teacher = build_model(cfg.teacher, task.feature_map, where="teacher").to(DEVICE).eval()
    distiller = build_distiller(cfg.distiller)
    assert isinstance(distiller, HetComp)
    torch.manual_seed(1)
    student = distiller.build_student(cfg.student, task.feature_map, teacher).to(DEVICE)
    c = distiller.cfg
    g = torch.Generator().manual_seed(0)
    lists = torch.cat([torch.rand(min(2048, task.num_users - r), task.num_items, generator=g).topk(c.K, dim=1).indices
                       for r in range(0, task.num_users, 2048)])  # [U, K] distinct random items per user
    perms = lists.to(DEVICE).expand(c.num_ckpt, *lists.shape)  # every checkpoint and teacher alike: cost only
    distiller._trajectories = lambda: perms.expand(len(c.teachers), *perms.shape)
    distiller.setup(DistillContext(student, teacher, task, task.device, None, seed=1))
    distiller.aux_modules().to(DEVICE)
    (phase,) = distiller.phases(distiller.ctx)
    opt = torch.optim.Adam(phase.params, lr=tc.lr, weight_decay=tc.weight_decay)
    n_batches = math.ceil(task.num_rows("train") / bs)
    rows = []
    for loss_kind in ("overall", "listwise"):
        distiller._aux["curriculum"].idx.fill_(0 if loss_kind == "overall" else perms.shape[0] - 1)
        it = task.train_batches(torch.Generator().manual_seed(0), bs, tc.negatives)
        times = []
        for _ in range(a.batches + 2):
            batch = next(it)
            t0 = now()
            loss = phase.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(now() - t0)
        step = statistics.median(times[2:])  # the first two: warm-up
        rows.append({"bench": "hetcomp-step", "experiment": a.experiment, "loss": loss_kind,
                     "device": str(DEVICE), "threads": torch.get_num_threads(), "batch_size": bs, "items": task.num_items,
                     "timed_batches": a.batches, "step_ms_median": round(step * 1e3, 1),
                     "step_ms_all": [round(t * 1e3) for t in times[2:]], "batches_per_epoch": n_batches,
                     "epoch_train_min": round(step * n_batches / 60, 2)})
    return rows


def load_ranking_module(path: str):
    """Another version of ``kdrec/eval/ranking.py`` (it imports only torch), e.g. from a worktree
    of an earlier commit, to time its ranker beside the current one in the same process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ranking_compared", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def calls_ms(fn, arg, calls: int) -> float:
    fn(arg)  # one untimed call: a server calls one model back to back
    t0 = now()
    for _ in range(calls):
        fn(arg)
    return (now() - t0) / calls * 1e3


def bench_serve(a, cfg) -> list[dict]:
    """Teacher and student rankers (fresh seeded weights, as ``benchmark-flops``) timed in
    alternation: per round, ``--calls`` requests of 1 user and one of 4,096 users per model."""
    task = make_task(cfg, 2048)
    rankers = {}
    for role in ("teacher", "student"):
        torch.manual_seed(0)
        model = build_model(cfg[role], task.feature_map, where=role).to(DEVICE).eval()
        U, I = task.embeddings(model)
        rankers[role] = {"current": task.ranker(model)}
        if a.compare_with:
            rankers[role]["compared"] = load_ranking_module(a.compare_with).TopKRanker(U, I, 20)
    one = torch.tensor([7], device=DEVICE)
    big = torch.arange(4096, device=DEVICE) % task.num_users
    versions = list(rankers["teacher"])
    t = {(v, role, b): [] for v in versions for role in ("teacher", "student") for b in (1, 4096)}
    for _ in range(a.rounds):  # versions alternate too, so that drift hits them alike
        for v in versions:
            for role in ("teacher", "student"):
                t[v, role, 1].append(calls_ms(rankers[role][v], one, a.calls))
                t[v, role, 4096].append(calls_ms(rankers[role][v], big, 1))
    rows = []
    for v in versions:
        row = {"bench": "serve", "experiment": a.experiment, "version": v, "device": str(DEVICE),
               "threads": torch.get_num_threads(), "rounds": a.rounds}
        for b in (1, 4096):
            te, st = t[v, "teacher", b], t[v, "student", b]
            row[f"teacher_ms_b{b}"] = round(statistics.median(te), 4)
            row[f"student_ms_b{b}"] = round(statistics.median(st), 4)
            row[f"ratio_b{b}"] = round(statistics.median(s / x for s, x in zip(st, te)), 3)
        rows.append(row)
    return rows


def bench_distill(a, cfg_base) -> list[dict]:
    from omegaconf import OmegaConf

    from kdrec.train.config import TrainConfig
    from kdrec.train.loop import fit

    out = []
    # "none" twice: the first run warms up (allocator, first evaluation) and is not reported
    names = ["none", "none", *[d for d in a.distillers if d != "none"]]
    hetcomp_root = Path(a.outputs) / "bench_topk_teachers"
    for k, name in enumerate(names):
        kd = [f"distiller.{o}" for o in a.kd_overrides] if name != "none" else []
        cfg = compose_cfg(a.experiment, [f"distiller={name}", *a.overrides, *kd], a.outputs)
        tc = train_config(cfg, cfg.student)
        tc = TrainConfig.from_cfg(tc.__dict__, {"epochs": a.epochs, "patience": 10**6, "progress": False})
        task = make_task(cfg, tc.batch_size)
        torch.manual_seed(0)
        teacher = build_model(cfg.teacher, task.feature_map, where="teacher").eval()
        if a.teacher_dir:  # a trained teacher: HTD's groups, RRD's top-N depend on its weights
            teacher.load_state_dict(torch_load(Path(a.teacher_dir) / "checkpoint.pt")["state_dict"])
        teacher.to(DEVICE)
        for p in teacher.parameters():
            p.requires_grad_(False)
        distiller = build_distiller(cfg.distiller)
        torch.manual_seed(1)
        student = distiller.build_student(cfg.student, task.feature_map, teacher).to(DEVICE)
        with tempfile.TemporaryDirectory() as tmp:
            tdir = (hetcomp_root / cfg.dataset.name / "teacher") if name == "hetcomp" else Path(tmp) / "teacher"
            ctx = DistillContext(student, teacher, task, task.device, tdir, seed=1)
            t0 = now()
            if name == "none":
                def loss(batch):
                    return task.task_loss(student, batch)
                phases = [Phase("train", loss, unique_params(student.parameters()), [student])]
                aux = torch.nn.ModuleDict()
            else:
                distiller.setup(ctx)
                aux = distiller.aux_modules().to(DEVICE)
                phases = distiller.phases(ctx)
            setup_s = now() - t0
            save = {"model": student, **({"aux": aux} if len(aux) else {})}
            t1 = now()
            train_s = 0.0
            for ph in phases:
                res = fit(ph, task, tc, ckpt_dir=Path(tmp) / "ckpt", seed=1, save_modules=save)
                train_s += res.seconds
            fit_s = now() - t1
        row = {"bench": "distill", "experiment": a.experiment, "distiller": name, "kd_overrides": kd,
               "device": str(DEVICE), "threads": torch.get_num_threads(), "epochs": a.epochs, "setup_s": round(setup_s, 2),
               "train_s": round(train_s, 2), "fit_s": round(fit_s, 2), "run_s": round(setup_s + fit_s, 2)}
        if k == 0:
            continue
        if out and out[0]["distiller"] == "none":
            base = out[0]
            row["train_ratio"] = round(train_s / base["train_s"], 2)
            row["run_ratio"] = round(row["run_s"] / base["run_s"], 2)
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bench", choices=["epoch", "eval", "distill", "serve", "hetcomp-step"])
    ap.add_argument("--experiment", default="topk_gowalla_mf")
    ap.add_argument("--role", default="teacher", choices=["teacher", "student"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where models, data and steps run")
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--adam", default="default", choices=["default", "foreach", "fused"],
                    help="epoch bench: torch.optim.Adam implementation (the trainer uses the default)")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--distillers", nargs="+", default=["none"])
    ap.add_argument("--kd-overrides", nargs="*", default=[],
                    help="distill bench: KEY=VALUE set on every distiller but none (e.g. T_start=1e-4: "
                         "DE/HTD past their Gumbel-softmax annealing)")
    ap.add_argument("--teacher-dir", default="",
                    help="distill: load the teacher from this cache entry (outputs/teachers/<data>/<name>-<sig>) "
                         "instead of fresh weights")
    ap.add_argument("--rounds", type=int, default=15, help="serve: alternating rounds (medians taken)")
    ap.add_argument("--calls", type=int, default=200, help="serve: 1-user requests per model and round")
    ap.add_argument("--compare-with", default="",
                    help="serve: also time the TopKRanker of this ranking.py (e.g. a worktree's)")
    ap.add_argument("--outputs", default="outputs")
    ap.add_argument("--json", default="", help="append the result rows to this JSON-lines file")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides (after --)")
    a = ap.parse_intermixed_args()  # Hydra overrides may follow the options
    torch.set_num_threads(a.threads)
    global DEVICE
    DEVICE = torch.device(a.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {a.device}: torch sees no CUDA device")
    a.outputs = str(Path(a.outputs).resolve())
    cfg = compose_cfg(a.experiment, a.overrides, a.outputs)
    rows = {"epoch": lambda: [bench_epoch(a, cfg)], "eval": lambda: [bench_eval(a, cfg)],
            "distill": lambda: bench_distill(a, cfg), "serve": lambda: bench_serve(a, cfg),
            "hetcomp-step": lambda: bench_hetcomp_step(a, cfg)}[a.bench]()
    for r in rows:
        if a.bench != "distill":
            print(json.dumps(r), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    sys.exit(main())
