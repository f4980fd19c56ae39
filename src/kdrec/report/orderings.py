"""A paper's orderings ("A beats B") checked on a table's results: for each ordering of the table
yaml and each group that has both rows, the paired t-test of the test metric over the seeds both
rows have, how many of those seeds agree, and a reading a reviewer would write. Rendered under the
table, so the docs' list of which orderings hold is regenerated with the numbers, not typed."""

from __future__ import annotations

from kdrec.report.significance import paired_by_seed
from kdrec.table.spec import TableSpec

# metrics where lower is better; every other metric counts higher as better
LOWER_IS_BETTER = frozenset({"logloss", "loss", "mse", "rmse", "mae"})
SIGNIFICANT = 0.05


def reading(n: int, diff: float, p: float) -> str:
    """``diff``: better row minus worse row, signed so that > 0 means the ordering's direction
    (nan, and not read, when ``n`` is 0)."""
    if n == 0:
        return "no seed of both rows yet"
    if diff == 0:
        return "tie"
    if n == 1:
        return "holds on the one seed" if diff > 0 else "not on the one seed"
    if p == p and p < SIGNIFICANT:
        return f"**holds** (p < {SIGNIFICANT:g})" if diff > 0 else f"**reversed** (p < {SIGNIFICANT:g})"
    return "holds in the means (n.s.)" if diff > 0 else "not in the means (n.s.)"


def check(spec: TableSpec, summaries: list) -> list[dict]:
    """One record per (ordering, group with both rows). ``summaries``: the table's RowSummary list."""
    by_id = {s.row.id: s for s in summaries}
    groups = list(dict.fromkeys(s.row.group for s in summaries))
    out = []
    for o in spec.orderings:
        key = f"test_{o.metric}"
        sign = -1.0 if o.metric in LOWER_IS_BETTER else 1.0
        for g in groups:
            if o.only is not None and g not in o.only:
                continue
            a = by_id.get(f"{g}/{o.better}" if g else o.better)
            b = by_id.get(f"{g}/{o.worse}" if g else o.worse)
            if a is None or b is None:
                continue  # a row the group does not have
            # signed so that > 0 is the ordering's direction whichever way the metric improves
            x = {k: sign * v for k, v in a.by_seed(key).items()}
            y = {k: sign * v for k, v in b.by_seed(key).items()}
            seeds, t = paired_by_seed(x, y)
            n = len(seeds)
            out.append({"group": g, "group_label": a.row.group_label, "better": o.better, "worse": o.worse,
                        "text": o.text or f"{a.row.label} > {b.row.label}", "source": o.source,
                        "metric": o.metric, "n": n, "seeds": seeds,
                        "diff": sign * t["diff_mean"] if n else None,  # in the metric's own units
                        "agree": sum(x[k] > y[k] for k in seeds),
                        "p": t["p"] if n > 1 else None,
                        "reading": reading(n, t["diff_mean"], t["p"])})
    return out


def render(records: list[dict]) -> list[str]:
    """Markdown lines: one table of every ordering (a group column where the table has groups)."""
    if not records:
        return []
    grouped = any(r["group"] for r in records)
    metrics = sorted({r["metric"] for r in records})
    lines = [f"Papers' orderings on these results: paired t-test (two-sided) of test {', '.join(metrics)} "
             "over the seeds both rows have (mean diff: the first row minus the second; \"better on\": the seeds that agree).", ""]
    head = (["group"] if grouped else []) + ["ordering", "claimed by", "seeds", "mean diff", "better on", "p",
                                             "reading"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = ([r["group_label"] or r["group"]] if grouped else []) + [
            r["text"], r["source"], str(r["n"]),
            "" if r["diff"] is None else f"{r['diff']:+.4f}",
            f"{r['agree']}/{r['n']}" if r["n"] else "",
            "" if r["p"] is None or r["p"] != r["p"] else f"{r['p']:.3g}",
            r["reading"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


__all__ = ["check", "render", "reading", "LOWER_IS_BETTER"]
