"""kdrec side of the peer benchmark, through kdrec's own API: the config composed by Hydra
(``dataset=frappe_x1 teacher=<model>``), ``kdrec.data.registry.load_dataset`` (via
``runtime.load_data``), the registry model and ``kdrec.train.loop.fit`` (via
``teachers.train_plain``, the code path of ``kdrec pretrain-teacher``), with
``trainer.epochs=N`` and ``trainer.patience`` large so that exactly N epochs run."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from common import finish, load_spec, set_threads, sigmoid, timed_predictions

spec, out_path = load_spec()
set_threads(spec["threads"])

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

import kdrec  # noqa: E402
from kdrec.config import config_dir  # noqa: E402
from kdrec.bench.flops import param_counts  # noqa: E402
from kdrec.models.registry import build_model  # noqa: E402
from kdrec.runtime import build_task, load_data, pick_device, seed_everything  # noqa: E402
from kdrec.teachers import train_plain  # noqa: E402

root = Path(tempfile.mkdtemp(prefix="kdrec-", dir=spec["work_dir"]))  # cold cache: encode from CSV
try:
    overrides = [
        "dataset=frappe_x1", f"teacher={spec['model']}", "distiller=none", "device=cpu",
        f"device.threads={spec['threads']}", f"seed={spec['seed']}", f"teacher_seed={spec['seed']}",
        f"trainer.epochs={spec['epochs']}", f"trainer.patience={spec.get('patience', 100000)}",
        f"trainer.precision={spec.get('precision', 'fp32')}", "trainer.progress=false",
        f"trainer.batch_size={spec['batch_size']}", f"trainer.eval_batch_size={spec['eval_batch_size']}",
        f"trainer.lr={spec['lr']}", f"trainer.max_grad_norm={spec['max_grad_norm']}",
        f"paths.root={root}", f"paths.data_root={spec['data_dir']}",
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    device = pick_device(cfg)

    t0 = time.perf_counter()
    data = load_data(cfg)
    task = build_task(cfg, data, device, cfg.trainer.batch_size)
    preprocess_s = time.perf_counter() - t0

    seed_everything(spec["seed"])
    model = build_model(cfg.teacher, task.feature_map, where="teacher")
    # CPU seconds of the training batches: fit's total minus its validation and checkpoint writes
    import kdrec.train.loop as loop

    side_cpu = [0.0]

    def cpu_timed(fn):
        def wrapped(*a, **k):
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                side_cpu[0] += time.process_time() - t
        return wrapped

    task.evaluate = cpu_timed(task.evaluate)
    loop.atomic_torch_save = cpu_timed(loop.atomic_torch_save)
    loop.torch_load = cpu_timed(loop.torch_load)
    c0 = time.process_time()
    res = train_plain(model, task, cfg, cfg.teacher, root / "ckpt", spec["seed"], resume=False)
    train_cpu_s = time.process_time() - c0 - side_cpu[0]

    probs, infer_times = timed_predictions(
        lambda: torch.sigmoid(task.predict(model, "test")).numpy(), spec["infer_repeats"])
    test_y = task.splits["test"].y.numpy()
    finish(out_path, spec, framework="kdrec", version=getattr(kdrec, "__version__", "dev"),
           preprocess_s=preprocess_s, train_s=res.seconds, train_rows=task.num_rows("train"),
           epochs_run=res.epochs_run, infer_times=infer_times, test_y=test_y, test_prob=probs,
           params=param_counts(model)["params"], train_cpu_s=train_cpu_s,
           extra={"best_epoch": res.best_epoch, "valid_auc": res.best_valid.get("auc"),
                  "vocab_total": int(sum(task.feature_map.vocab_sizes))})
finally:
    shutil.rmtree(root, ignore_errors=True)
