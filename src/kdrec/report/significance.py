"""Paired significance over seeds: does a distiller beat the student trained alone?

For every student configuration ``... distiller=X ...`` whose twin ``... distiller=none ...`` (the
same overrides otherwise) is in the same report, the two are paired by seed (same seed, same
data order and initialisation) and a two-sided paired t-test is run on each headline test metric.
With 3 seeds the test has 2 degrees of freedom: only large, consistent gains reach p < 0.05, which
is the honest reading of a 3-seed table. No scipy: the t distribution's tail comes from the
regularized incomplete beta function (continued fraction, Numerical Recipes' ``betacf`` scheme).
"""

from __future__ import annotations

import math

import polars as pl


def _betacf(a: float, b: float, x: float, iters: int = 300, eps: float = 1e-15) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iters + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return float("nan")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def paired_t(a: list[float], b: list[float]) -> dict:
    """Two-sided paired t-test of mean(a - b) != 0."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n if n else float("nan")
    if n < 2:
        return {"n": n, "diff_mean": mean, "diff_std": float("nan"), "t": float("nan"), "p": float("nan")}
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        t = mean / (sd / math.sqrt(n))
    return {"n": n, "diff_mean": mean, "diff_std": sd, "t": t, "p": t_two_sided_p(t, n - 1)}


def paired_by_seed(x: dict[int, float], y: dict[int, float]) -> tuple[list[int], dict]:
    """The seeds both ``x`` and ``y`` (seed -> value) have, and :func:`paired_t` of x - y over them."""
    seeds = sorted(set(x) & set(y))
    return seeds, paired_t([x[k] for k in seeds], [y[k] for k in seeds])


def paired_tests(df: pl.DataFrame, metrics: list[str]) -> pl.DataFrame:
    """One row per (student config with a ``distiller=none`` twin, metric)."""
    if "baseline" not in df.columns:
        return pl.DataFrame()
    students = df.filter(pl.col("role") == "student")
    out = []
    for (config, baseline, dataset), group in students.group_by(["config", "baseline", "dataset"],
                                                                maintain_order=True):
        if baseline is None:
            continue
        base = students.filter((pl.col("config") == baseline) & (pl.col("dataset") == dataset))
        if base.is_empty():
            continue
        for metric in metrics:
            if metric not in df.columns:
                continue
            pairs = (group.select("seed", pl.col(metric).alias("x"))
                     .join(base.select("seed", pl.col(metric).alias("y")), on="seed")
                     .drop_nulls().sort("seed"))
            if pairs.height == 0:
                continue
            res = paired_t(pairs["x"].to_list(), pairs["y"].to_list())
            out.append({"dataset": dataset, "config": config, "baseline": baseline, "metric": metric, **res})
    return pl.DataFrame(out)


def _num(v: float, spec: str) -> str:
    return "-" if v != v else format(v, spec)  # n = 1 has no spread: a dash, not nan


def render_markdown(tests: pl.DataFrame) -> str:
    if tests.is_empty():
        return ""
    lines = ["", "Paired t-test over seeds (distiller vs the same student with distiller=none):", "",
             "| config | metric | n | mean diff | std diff | t | p (two-sided) |", "|---|---|---|---|---|---|---|"]
    for r in tests.iter_rows(named=True):
        lines.append(f"| {r['config']} | {r['metric']} | {r['n']} | {r['diff_mean']:+.4f} | "
                     f"{_num(r['diff_std'], '.4f')} | {_num(r['t'], '.2f')} | {_num(r['p'], '.3g')} |")
    return "\n".join(lines) + "\n"


__all__ = ["betainc", "t_two_sided_p", "paired_t", "paired_by_seed", "paired_tests", "render_markdown"]
