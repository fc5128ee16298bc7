#!/usr/bin/env python
"""Fit the cost models of ``sccluster.tl.estimate_resources`` on scale-study CSVs.

Example::

    python benchmarks/calibrate_resources.py benchmarks/results/scale-bgformer.csv \\
        benchmarks/results/scale-siamese.csv benchmarks/results/scale-baselines.csv

For each ``sccluster <method>`` pipeline of the CSVs (finished runs only), least squares give peak
memory = base + slope x stored counts, and time = fixed + slope x cells; stored counts are cells x
``COUNTS_PER_CELL`` (the upsampled PBMCs of the scale study). Prints the ``COSTS`` entries to paste
into ``src/sccluster/tl/_resources.py`` and, per run, the estimate over the measurement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def fit(rows: pd.DataFrame, counts_per_cell: float) -> tuple[float, float, float, float]:
    """``(base_mb, mb_per_m_counts, fixed_s, s_per_k_cells)`` by least squares."""
    cells = rows["n_cells"].astype(float).to_numpy()
    counts = cells * counts_per_cell / 1e6
    mem = np.polyfit(counts, rows["peak_rss_mb"].astype(float).to_numpy(), 1)
    tim = np.polyfit(cells / 1e3, rows["time_s"].astype(float).to_numpy(), 1)
    return float(mem[1]), float(mem[0]), float(max(tim[1], 0.0)), float(tim[0])


def main(argv: list[str] | None = None) -> int:
    from sccluster.tl._resources import COUNTS_PER_CELL

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csvs", nargs="+", type=Path)
    args = p.parse_args(argv)
    df = pd.concat([pd.read_csv(f) for f in args.csvs])
    df = df[(df["status"] == "ok") & df["pipeline"].str.startswith("sccluster ")]
    for pipeline, rows in df.groupby("pipeline"):
        method = pipeline.split(" ", 1)[1]
        base, per_count, fixed, per_cell = fit(rows, COUNTS_PER_CELL)
        print(f'    "{method}": CostModel(base_mb={base:.0f}.0, mb_per_m_counts={per_count:.3g}, '
              f'fixed_s={fixed:.0f}.0, s_per_k_cells={per_cell:.3g}),')  # fmt: skip
        for _, r in rows.iterrows():
            est_mem = base + per_count * r["n_cells"] * COUNTS_PER_CELL / 1e6
            est_t = fixed + per_cell * r["n_cells"] / 1e3
            print(f"      {int(r['n_cells']):>9,} cells seed {r['seed']}: memory {est_mem / r['peak_rss_mb']:.2f}x, "
                  f"time {est_t / r['time_s']:.2f}x of the measurement", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
