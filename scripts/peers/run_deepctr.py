"""DeepCTR-Torch side of the peer benchmark (deepctr-torch 0.3.x, its own venv).

Preprocessing: pandas reads the CSVs, each field's vocabulary comes from train (every value seen
once or more, the BARS min count 1), index 0 is kept for values unseen in train (vectorized
``Index.get_indexer`` + 1). DeepCTR-Torch has no preprocessing of its own beyond
``SparseFeat`` declarations, so this is the usual user code around it.

DCNv2 = ``DCN(cross_parameterization="matrix")`` (DCN-M, full-rank W in each cross layer), with no
linear feature columns so that no first-order term is added; DeepFM = ``DeepFM`` (linear + FM +
DNN). DeepCTR-Torch sums the BCE over the batch and adds ``l2 * ||W||^2`` of the embedding tables
as a loss, so ``l2 = embedding_l2 / 2 * batch_size`` gives the same update direction as the mean
BCE + ``embedding_l2 / 2 * ||W||^2`` of kdrec and FuxiCTR (Adam does not see the overall scale).
"""

from __future__ import annotations

import time

from common import FIELDS, LABEL, finish, load_spec, set_threads, split_path, timed_predictions

spec, out_path = load_spec()
set_threads(spec["threads"])

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import deepctr_torch  # noqa: E402
from deepctr_torch.inputs import SparseFeat  # noqa: E402
from deepctr_torch.models import DCN, DeepFM  # noqa: E402

# ---------------------------------------------------------------- preprocessing (timed apart)
t0 = time.perf_counter()
frames = {s: pd.read_csv(split_path(spec, s)) for s in ("train", "valid", "test")}
cats = {f: pd.Index(frames["train"][f].unique()) for f in FIELDS}
xs, ys = {}, {}
for s, df in frames.items():
    xs[s] = {f: cats[f].get_indexer(df[f]).astype(np.int64) + 1 for f in FIELDS}  # -1 (unseen) -> 0
    ys[s] = df[LABEL].to_numpy(dtype=np.float32)
columns = [SparseFeat(f, vocabulary_size=len(cats[f]) + 1, embedding_dim=spec["embed_dim"])
           for f in FIELDS]
preprocess_s = time.perf_counter() - t0

# ---------------------------------------------------------------- model
l2 = spec["embedding_l2"] / 2 * spec["batch_size"]
kw = dict(dnn_hidden_units=tuple(spec["hidden"]), dnn_dropout=spec["dropout"],
          dnn_use_bn=spec["batch_norm"], dnn_activation="relu", l2_reg_embedding=l2, l2_reg_dnn=0.0,
          seed=spec["seed"], task="binary", device="cpu")
if spec["model"] == "dcnv2":
    model = DCN([], columns, cross_num=spec["cross_layers"], cross_parameterization="matrix",
                l2_reg_linear=0.0, l2_reg_cross=0.0, **kw)
elif spec["model"] == "deepfm":
    model = DeepFM(columns, columns, l2_reg_linear=l2, **kw)
else:
    raise SystemExit(f"unknown model {spec['model']}")
model.compile(torch.optim.Adam(model.parameters(), lr=spec["lr"]), "binary_crossentropy", metrics=None)

# ---------------------------------------------------------------- training (no validation inside)
t0, c0 = time.perf_counter(), time.process_time()
model.fit(xs["train"], ys["train"], batch_size=spec["batch_size"], epochs=spec["epochs"], verbose=0,
          shuffle=True)
train_s = time.perf_counter() - t0
train_cpu_s = time.process_time() - c0

# ---------------------------------------------------------------- inference on test
probs, infer_times = timed_predictions(
    lambda: model.predict(xs["test"], batch_size=spec["eval_batch_size"]), spec["infer_repeats"])
from common import roc_auc  # noqa: E402

valid_auc = roc_auc(ys["valid"], model.predict(xs["valid"], batch_size=spec["eval_batch_size"]))
finish(out_path, spec, framework="deepctr", version=deepctr_torch.__version__,
       preprocess_s=preprocess_s, train_s=train_s, train_rows=len(ys["train"]),
       epochs_run=spec["epochs"], infer_times=infer_times, test_y=ys["test"], test_prob=probs,
       params=sum(p.numel() for p in model.parameters()), train_cpu_s=train_cpu_s,
       extra={"valid_auc": valid_auc, "vocab_total": int(sum(len(c) + 1 for c in cats.values()))})
