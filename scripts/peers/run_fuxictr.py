"""FuxiCTR side of the peer benchmark (fuxictr 2.3.x, its own venv).

The pip package ships the library (FeatureProcessor, FeatureMap, layers, BaseModel, data loaders)
but not the model zoo, so DCNv2 and DeepFM are composed here from FuxiCTR's own layers the way
its model zoo composes them (FeatureEmbedding + CrossNetV2 / FactorizationMachine + MLP_Block,
sigmoid output, BaseModel.fit/predict).

Preprocessing: FuxiCTR's FeatureProcessor (polars) reads the CSVs, fits vocabularies on train
(min_categr_count=1) and encodes every split with ``FeatureProcessor.transform``; the splits are
saved as npz and read with FuxiCTR's ``NpzDataLoader`` (``data_format: npz``) with
``num_workers=0`` so that all work stays in this one process (its parquet loader runs on Ray
workers, whose threads and memory this benchmark could neither pin nor measure).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time

from common import FIELDS, LABEL, finish, load_spec, set_threads, split_path, timed_predictions

spec, out_path = load_spec()
set_threads(spec["threads"])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import fuxictr  # noqa: E402
from fuxictr.features import FeatureMap  # noqa: E402
from fuxictr.preprocess import FeatureProcessor  # noqa: E402
from fuxictr.pytorch.dataloaders.npz_dataloader import NpzDataLoader  # noqa: E402
from fuxictr.pytorch.layers import (CrossNetV2, FactorizationMachine, FeatureEmbedding,  # noqa: E402
                                    MLP_Block)
from fuxictr.pytorch.models import BaseModel  # noqa: E402
from fuxictr.pytorch.torch_utils import seed_everything  # noqa: E402

logging.basicConfig(level=logging.WARNING)


class DCNv2(BaseModel):
    """parallel structure: fc([CrossNetV2(e), MLP(e)]), full-rank cross layers."""

    def __init__(self, feature_map, embedding_dim, num_cross_layers, hidden_units, net_dropout,
                 batch_norm, learning_rate, **kwargs):
        super().__init__(feature_map, model_id="DCNv2", **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        n = feature_map.sum_emb_out_dim()
        self.crossnet = CrossNetV2(n, num_cross_layers)
        self.parallel_dnn = MLP_Block(input_dim=n, output_dim=None, hidden_units=hidden_units,
                                      hidden_activations="ReLU", output_activation=None,
                                      dropout_rates=net_dropout, batch_norm=batch_norm)
        self.fc = nn.Linear(n + hidden_units[-1], 1)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        e = self.embedding_layer(X, flatten_emb=True)
        out = self.fc(torch.cat([self.crossnet(e), self.parallel_dnn(e)], dim=-1))
        return {"y_pred": self.output_activation(out)}


class DeepFM(BaseModel):
    """FM (its LogisticRegression first-order term + pairwise term) + MLP on the shared embedding."""

    def __init__(self, feature_map, embedding_dim, hidden_units, net_dropout, batch_norm,
                 learning_rate, **kwargs):
        super().__init__(feature_map, model_id="DeepFM", **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.fm = FactorizationMachine(feature_map)
        self.mlp = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1,
                             hidden_units=hidden_units, hidden_activations="ReLU",
                             output_activation=None, dropout_rates=net_dropout, batch_norm=batch_norm)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        e = self.embedding_layer(X)
        y = self.fm(X, e) + self.mlp(e.flatten(start_dim=1))
        return {"y_pred": self.output_activation(y)}


work = tempfile.mkdtemp(prefix="fuxictr-", dir=spec["work_dir"])
try:
    seed_everything(spec["seed"])
    # ---------------------------------------------------------------- preprocessing (timed apart)
    t0 = time.perf_counter()
    fp = FeatureProcessor(
        feature_cols=[{"name": FIELDS, "active": True, "dtype": "str", "type": "categorical"}],
        label_col={"name": LABEL, "dtype": "float"}, dataset_id="frappe_x1", data_root=work)
    train_ddf = fp.preprocess(fp.read_data(split_path(spec, "train")))
    fp.fit(train_ddf, min_categr_count=1)
    data_dir = os.path.join(work, "frappe_x1")
    for split in ("train", "valid", "test"):
        df = fp.preprocess(fp.read_data(split_path(spec, split))).collect()
        batch = fp.transform({c: df[c].to_numpy() for c in df.columns})
        np.savez(os.path.join(data_dir, f"{split}.npz"),
                 **{k: np.asarray(v) for k, v in batch.items()})
    params = {"embedding_dim": spec["embed_dim"]}
    feature_map = FeatureMap("frappe_x1", data_dir)
    feature_map.load(os.path.join(data_dir, "feature_map.json"), params)
    loaders = {
        split: NpzDataLoader(feature_map, os.path.join(data_dir, f"{split}.npz"),
                             batch_size=spec["batch_size"] if split == "train" else spec["eval_batch_size"],
                             shuffle=split == "train", num_workers=0)
        for split in ("train", "valid", "test")}
    preprocess_s = time.perf_counter() - t0

    # ---------------------------------------------------------------- model
    common = dict(gpu=-1, task="binary_classification", monitor="AUC", monitor_mode="max",
                  save_best_only=True, early_stop_patience=spec.get("patience", 100000), reduce_lr_on_plateau=True,
                  embedding_regularizer=spec["embedding_l2"], net_regularizer=0, verbose=0,
                  model_root=os.path.join(work, "ckpt"), metrics=["AUC", "logloss"],
                  optimizer="adam", loss="binary_crossentropy", learning_rate=spec["lr"],
                  embedding_dim=spec["embed_dim"], hidden_units=spec["hidden"],
                  net_dropout=spec["dropout"], batch_norm=spec["batch_norm"])
    os.makedirs(os.path.join(work, "ckpt", "frappe_x1"), exist_ok=True)
    if spec["model"] == "dcnv2":
        model = DCNv2(feature_map, num_cross_layers=spec["cross_layers"], **common)
    elif spec["model"] == "deepfm":
        model = DeepFM(feature_map, **common)
    else:
        raise SystemExit(f"unknown model {spec['model']}")

    # ---------------------------------------------------------------- training: fit(), minus the
    # per-epoch validation + checkpointing (eval_step), which is timed and subtracted
    eval_s, eval_cpu_s = [0.0], [0.0]
    valid_aucs = []
    orig_eval_step = model.eval_step

    def timed_eval_step():
        t, c = time.perf_counter(), time.process_time()
        orig_eval_step()
        eval_s[0] += time.perf_counter() - t
        eval_cpu_s[0] += time.process_time() - c
        valid_aucs.append(float(model._best_metric))

    model.eval_step = timed_eval_step
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(loaders["train"], epochs=spec["epochs"], validation_data=loaders["valid"],
              max_gradient_norm=spec["max_grad_norm"])
    train_s = time.perf_counter() - t0 - eval_s[0]
    train_cpu_s = time.process_time() - c0 - eval_cpu_s[0]

    # ---------------------------------------------------------------- inference on test
    probs, infer_times = timed_predictions(lambda: model.predict(loaders["test"]), spec["infer_repeats"])
    test_y = np.load(os.path.join(data_dir, "test.npz"))[LABEL]
    finish(out_path, spec, framework="fuxictr", version=fuxictr.__version__,
           preprocess_s=preprocess_s, train_s=train_s, train_rows=loaders["train"].num_samples,
           epochs_run=model._epoch_index + 1, infer_times=infer_times, test_y=test_y,
           test_prob=probs, params=sum(p.numel() for p in model.parameters()),
           train_cpu_s=train_cpu_s, extra={"valid_auc": max(valid_aucs) if valid_aucs else None, "valid_eval_s": eval_s[0],
                  "vocab_total": int(sum(f["vocab_size"] for f in feature_map.features.values()))})
finally:
    shutil.rmtree(work, ignore_errors=True)
