import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from kdrec.eval.metrics import auc, logloss


@pytest.mark.parametrize("n,levels", [(50, 0), (1000, 0), (1000, 7), (5000, 3)])
def test_auc_matches_sklearn_including_ties(n, levels):
    rng = np.random.default_rng(n + levels)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + y * 0.7
    if levels:  # heavy ties: scores quantised to a few values
        s = np.round(s * levels) / levels
    ours = float(auc(torch.tensor(y), torch.tensor(s)))
    assert ours == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_hand_case():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4), (0.8>0.1), (0.4=0.4 -> 1/2), (0.4>0.1)
    y = torch.tensor([1, 1, 0, 0])
    s = torch.tensor([0.8, 0.4, 0.4, 0.1])
    assert float(auc(y, s)) == pytest.approx(3.5 / 4)


def test_auc_single_class_is_nan():
    assert torch.isnan(auc(torch.ones(5), torch.rand(5)))


def test_logloss_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    z = rng.normal(size=500) * 3
    p = 1 / (1 + np.exp(-z))
    assert float(logloss(torch.tensor(y), torch.tensor(z))) == pytest.approx(log_loss(y, p), rel=1e-9)
