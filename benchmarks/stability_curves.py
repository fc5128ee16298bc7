#!/usr/bin/env python
"""Subsample-stability curves behind BGFormer's k estimate (``resolution="auto"``), at two noise levels.

Example::

    python benchmarks/stability_curves.py --datasets mouse_bladder_top2000 worm_neuron paul15 \\
        --noise-std 1.0 2.5 --csv benchmarks/results/stability-curves.csv

For each dataset and ``noise_std``, BGFormer (seed 0, its other defaults) is pretrained on the counts alone with
``cluster_steps=0``, which is where ``n_clusters=None`` chooses its Leiden resolution, and every row of its
``resolution_table_`` is written: resolution, stability (mean pairwise ARI between subsample partitions), its sd
over subsample pairs, the median number of clusters, and the resolution chosen. Nothing here reads a label: the
labels are set aside by ``counts_only`` and never loaded. ``--from-csv`` prints the curves as a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P
from run import LABEL_KEY, find_datasets

COLUMNS = [
    "dataset",
    "noise_std",
    "chosen",
    "resolution",
    "stability",
    "stability_sd",
    "n_clusters",
    "git_commit",
]


def curve(path: Path, noise_std: float) -> list[dict]:
    """The resolution table of BGFormer's k estimate on the dataset at ``path``."""
    import sccluster as scc
    from sccluster.models import BGFormer

    _, adata = C.counts_only(scc.read(path), LABEL_KEY)
    scc.pp.prepare(adata)
    model = BGFormer(None, random_state=0, noise_std=noise_std, cluster_steps=0, device="cpu").fit(adata)
    return [{"chosen": model.resolution_, **row} for row in model.resolution_table_]


def markdown(csv_path: Path) -> str:
    """One line per dataset and noise level: the stability at each resolution, the chosen one in bold."""
    import pandas as pd

    df = pd.read_csv(csv_path)
    lines = [
        "| dataset | noise_std | stability (median clusters) at each resolution; **chosen** |",
        "|---|---|---|",
    ]
    for (dataset, noise), g in df.groupby(["dataset", "noise_std"], sort=False):
        cells = []
        for r in g.sort_values("resolution").itertuples():
            cell = f"{r.resolution:g}: {r.stability:.3f} ± {r.stability_sd:.3f} ({r.n_clusters:g})"
            cells.append(f"**{cell}**" if r.resolution == r.chosen else cell)
        lines.append(f"| {dataset} | {noise:g} | " + "; ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["mouse_bladder_top2000", "worm_neuron", "paul15"])
    p.add_argument("--noise-std", nargs="+", type=float, default=[1.0, 2.5])
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument(
        "--csv", type=Path, default=C.REPO_ROOT / "benchmarks" / "results" / "stability-curves.csv"
    )
    p.add_argument("--resume", action="store_true", help="keep the finished curves of an existing --csv")
    p.add_argument(
        "--from-csv", type=Path, default=None, help="print the table of a finished CSV, run nothing"
    )
    args = C.parse_or_summarise(p, argv, markdown)
    if args is None:
        return 0
    data_dir = args.data_dir or P.default_data_dir()
    commit = P.git_commit()
    with C.resumable_csv(args.csv, COLUMNS, ["dataset", "noise_std"], args.resume) as (write, done):
        for path in find_datasets(data_dir, args.datasets):
            for noise in args.noise_std:
                if (path.stem, str(noise)) in done:
                    continue
                for row in curve(path, noise):
                    write({**row, "dataset": path.stem, "noise_std": noise, "git_commit": commit})
                print(f"{path.stem} noise_std={noise:g}: done", flush=True)
    print(markdown(args.csv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
