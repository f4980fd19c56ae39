"""Paired t-test of the report: the t tail against known quantiles, and pairing by seed."""

import math

import polars as pl
import pytest

from kdrec.report.significance import betainc, paired_t, paired_tests, t_two_sided_p


def test_t_tail_matches_textbook_quantiles():
    # two-sided 5% critical values of Student's t (any statistics table)
    for df, crit in [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)]:
        assert t_two_sided_p(crit, df) == pytest.approx(0.05, abs=2e-4)
    # df=1 is Cauchy: P(|T| >= t) = 1 - 2 atan(t) / pi
    assert t_two_sided_p(3.0, 1) == pytest.approx(1 - 2 * math.atan(3.0) / math.pi, rel=1e-9)
    # df=2 has a closed form: P(|T| >= t) = 1 - t / sqrt(2 + t^2)
    assert t_two_sided_p(1.7, 2) == pytest.approx(1 - 1.7 / math.sqrt(2 + 1.7**2), rel=1e-9)
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-4)  # I_0.4(2,3) = 0.52480


def test_paired_t_by_hand():
    a, b = [0.81, 0.83, 0.80], [0.80, 0.81, 0.79]
    d = [0.01, 0.02, 0.01]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    r = paired_t(a, b)
    assert r["n"] == 3 and r["diff_mean"] == pytest.approx(mean)
    assert r["t"] == pytest.approx(mean / (sd / math.sqrt(3)))
    assert r["p"] == pytest.approx(1 - r["t"] / math.sqrt(2 + r["t"] ** 2))


def test_pairs_by_seed_with_the_distiller_none_twin():
    rows = []
    for seed, (kd, alone) in {"1": (0.90, 0.88), "2": (0.91, 0.90), "3": (0.89, 0.86)}.items():
        rows.append({"role": "student", "config": "distiller=kd student=fm", "baseline": "distiller=none student=fm",
                     "dataset": "d", "seed": seed, "test_auc": kd})
        rows.append({"role": "student", "config": "distiller=none student=fm", "baseline": None,
                     "dataset": "d", "seed": seed, "test_auc": alone})
    rows.append({"role": "student", "config": "distiller=kd student=fm", "baseline": "distiller=none student=fm",
                 "dataset": "d", "seed": "4", "test_auc": 0.5})  # no twin for seed 4: left out
    out = paired_tests(pl.DataFrame(rows), ["test_auc"])
    assert out.height == 1
    r = out.row(0, named=True)
    assert r["n"] == 3 and r["diff_mean"] == pytest.approx((0.02 + 0.01 + 0.03) / 3)
    assert r["p"] == pytest.approx(paired_t([0.90, 0.91, 0.89], [0.88, 0.90, 0.86])["p"])
