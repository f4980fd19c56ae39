"""KD-DAGFM family models: every registered teacher/student builds from its yaml, maps [B, F] ids to
[B] logits, and can fit 64 rows (the training loss must fall)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from kdrec.data.spec import FeatureMap, FieldInfo
from kdrec.errors import ConfigError
from kdrec.models.registry import build_model

CONF = Path(__file__).resolve().parents[1] / "conf"
FM = FeatureMap("t", [FieldInfo(f"f{i}", 7 + i) for i in range(5)])

# tiny versions of every model (same classes as the yamls, smaller widths)
TINY = {
    "cin": {"cin_layers": [6, 6]},
    "xdeepfm": {"cin_layers": [6], "dnn_hidden": [16], "dropout": 0.0},
    "crossnet": {"cross_layers": 2},
    "dcnv2": {"cross_layers": 2, "dnn_hidden": [16], "dropout": 0.0},
    "dcnv2_stacked": {"name": "dcnv2", "structure": "stacked", "cross_layers": 2, "dnn_hidden": [16], "dropout": 0.0},
    "dcnv2_mix": {"name": "dcnv2", "low_rank_mixture": True, "low_rank": 4, "num_experts": 2,
                  "cross_layers": 2, "dnn_hidden": [16], "dropout": 0.0},
    "autoint": {"attention_layers": 2, "num_heads": 2, "attention_dim": 8},
    "autoint_plus": {"attention_layers": 2, "num_heads": 2, "attention_dim": 8, "dnn_hidden": [16], "dropout": 0.0},
    "deepfm": {"hidden": [16], "dropout": 0.0},
    "fibinet": {"hidden": [16], "dropout": 0.0},
    "fibinet_each": {"name": "fibinet", "bilinear_type": "field_each", "hidden": [16], "dropout": 0.0},
    "dagfm_inner": {"name": "dagfm", "interaction": "inner"},
    "dagfm_outer": {"name": "dagfm", "interaction": "outer"},
    "dagfm_kernel": {"name": "dagfm", "interaction": "kernel"},
    "dagfm_plus": {"mlp_hidden": [16]},
}


def _tiny(key: str):
    cfg = {"name": key, "embed_dim": 4, **TINY[key]}
    return build_model(cfg, FM)


MY_YAMLS = [*(f"teacher/{n}.yaml" for n in ("cin", "xdeepfm", "crossnet", "dcnv2", "autoint",
                                              "autoint_plus", "deepfm", "fibinet")),
            "student/dagfm.yaml", "student/dagfm_plus.yaml"]


@pytest.mark.parametrize("path", [CONF / p for p in MY_YAMLS], ids=lambda p: p.stem)
def test_yaml_builds_and_forward_shape(path):
    cfg = OmegaConf.load(path)
    model = build_model(cfg, FM)
    x = torch.stack([torch.randint(0, v, (9,)) for v in FM.vocab_sizes], 1)
    model.eval()
    z = model(x)
    assert z.shape == (9,) and torch.isfinite(z).all()


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add overhead on a loaded machine
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("key", sorted(TINY))
def test_overfits_64_rows(key, one_thread):
    torch.manual_seed(0)
    model = _tiny(key)
    g = torch.Generator().manual_seed(1)
    x = torch.stack([torch.randint(0, v, (64,), generator=g) for v in FM.vocab_sizes], 1)
    y = torch.randint(0, 2, (64,), generator=g).float()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    model.train()
    first = bce(model(x), y).item()
    for _ in range(80):
        opt.zero_grad()
        loss = bce(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    last = bce(model(x), y).item()
    assert last < 0.5 * first, (key, first, last)


def test_misspelled_key_and_bad_choice_fail():
    with pytest.raises(ConfigError, match="cin_layer"):
        build_model({"name": "cin", "cin_layer": [4]}, FM)
    with pytest.raises(ConfigError, match="interaction"):
        build_model({"name": "dagfm", "interaction": "hadamard"}, FM)
    with pytest.raises(ConfigError, match="structure"):
        build_model({"name": "dcnv2", "structure": "serial"}, FM)


def test_cin_matches_naive_loop():
    """CIN layer k: X^k_h = sum_{i,j} W_{h,(i,j)} X^{k-1}_i * X^0_j + b_h, pooled over D."""
    from kdrec.models.layers.cin import CIN

    torch.manual_seed(0)
    cin = CIN(3, [4, 2])
    e = torch.randn(5, 3, 6)
    pooled, x = [], e
    for w, b in zip(cin.weights, cin.biases):
        h_prev = x.shape[1]
        nxt = torch.zeros(5, w.shape[0], 6)
        for h in range(w.shape[0]):
            for i in range(h_prev):
                for j in range(3):
                    nxt[:, h] += w[h, i * 3 + j] * x[:, i] * e[:, j]
            nxt[:, h] += b[h]
        x = nxt
        pooled.append(x.sum(-1))
    torch.testing.assert_close(cin(e), torch.cat(pooled, 1), rtol=1e-5, atol=1e-5)


def test_crossnet_matches_formula():
    from kdrec.models.layers.crossnet import CrossNetV2

    torch.manual_seed(0)
    net = CrossNetV2(6, 2)
    x0 = torch.randn(4, 6)
    x = x0
    for lin in net.layers:
        x = x0 * (x @ lin.weight.T + lin.bias) + x
    torch.testing.assert_close(net(x0), x)


def test_fibinet_bilinear_pairs():
    from kdrec.models.ctr.fibinet import Bilinear

    torch.manual_seed(0)
    bl = Bilinear(4, 3, "field_all")
    e = torch.randn(2, 4, 3)
    ref = [(e[:, i] @ bl.W[0]) * e[:, j] for i in range(4) for j in range(i + 1, 4)]
    torch.testing.assert_close(bl(e), torch.stack(ref, 1))


@pytest.mark.parametrize("key", ["autoint", "autoint_plus"])
def test_autoint_inference_in_chunks_matches_one_pass(key):
    from kdrec.models.ctr import autoint

    torch.manual_seed(0)
    model = _tiny(key).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    n = 2 * autoint.INFERENCE_CHUNK_ROWS + 123
    x = torch.stack([torch.randint(0, f.vocab_size, (n,)) for f in FM.fields], dim=1)
    with torch.no_grad():
        chunked = model(x)
        whole = model._score(x, model.embedding(x))
    assert chunked.shape == (n,)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-7)
