"""Cost of the quote-aware structure check (kdrec.data.encode.open_table): 2M rows of
label,user,item,range with every text field quoted (a comma inside `range`), against the same table
without quotes on the plain path. Prints the best of 3 per case.

    .venv/bin/python scripts/bench_csv_quotes.py [--rows 2000000] [--dir /tmp/kdrec_csv_bench]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from kdrec.data.encode import open_table


def write_tables(d: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    lab, u, i, c = rng.integers(0, 2, n), rng.integers(0, 10**6, n), rng.integers(0, 10**5, n), rng.integers(0, 50, n)
    with open(d / "quoted.csv", "w") as f:
        f.write("label,user,item,range\n")
        f.writelines(f'{a},"u{b}","i{e}","{g},000 - {g + 1},000"\n' for a, b, e, g in zip(lab, u, i, c))
    with open(d / "plain.csv", "w") as f:
        f.write("label,user,item,range\n")
        f.writelines(f"{a},u{b},i{e},{g}000 - {g + 1}000\n" for a, b, e, g in zip(lab, u, i, c))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--dir", default="/tmp/kdrec_csv_bench")
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "quoted.csv").is_file():
        write_tables(d, args.rows)
    for name, quoted in (("plain.csv", False), ("plain.csv", True), ("quoted.csv", True)):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            open_table(d / name, required=["label"], quoted=quoted)
            times.append(time.perf_counter() - t0)
        mb = (d / name).stat().st_size / 2**20
        print(f"{name} ({mb:.0f} MiB) quoted={quoted}: {min(times):.2f} s, {mb / min(times):.0f} MiB/s")


if __name__ == "__main__":
    main()
