#!/usr/bin/env python
"""With and without ``batch_key``: quality and batch mixing of the partitions stored in run.py CSVs.

Example::

    python benchmarks/batch_mixing.py benchmarks/results/bgformer.csv benchmarks/results/bgformer-batch.csv \\
        benchmarks/results/baselines.csv --datasets baron_human_pancreas kang_pbmc_stim

Reads the partitions that ``run.py`` keeps in its CSVs (no fit) and the batch column of each dataset
(``obs["batch"]`` by default). Per (method and parameters, k mode, dataset), over seeds:

- ``ARI`` against the annotation (scored afterwards, as everywhere);
- ``single-batch clusters``: clusters with more than 90 % of their cells from one batch
  (:func:`sccluster.metrics.single_batch_clusters`, as ``tl.cluster`` records it), label-free;
- ``batch entropy``: the mean over cells of the normalised entropy of the batches in the cell's cluster
  (:func:`sccluster.metrics.batch_entropy`), label-free.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
from _provenance import default_data_dir
from summary import load_runs

from sccluster.metrics import batch_entropy, single_batch_clusters


def table(csvs: list[Path], datasets: list[str], data_dir: Path, batch_col: str) -> str:
    import anndata as ad

    runs = load_runs(csvs)
    runs = runs[runs["dataset"].isin(datasets) & runs["partition"].notna()]
    batches = {
        d: ad.read_h5ad(data_dir / f"{d}.h5ad", backed="r").obs[batch_col].astype(str).to_numpy()
        for d in datasets
    }
    head = "| method | k | dataset | seeds | ARI | k found | single-batch clusters | batch entropy |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for (variant, k_mode, dataset), g in runs.groupby(["variant", "k_mode", "dataset"], sort=True):
        parts = [C.decode_partition(p) for p in g["partition"]]
        single = np.mean([single_batch_clusters(p, batches[dataset]) for p in parts])
        entropy = np.mean([batch_entropy(p, batches[dataset]) for p in parts])
        lines.append(
            f"| {variant} | {k_mode} | {dataset} | {len(g)} | {C.fmt_mean_std(g['ari'].tolist())} "
            f"| {g['k_found'].mean():.1f} | {single:.1f} | {entropy:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csvs", nargs="+", type=Path)
    p.add_argument("--datasets", nargs="+", default=["baron_human_pancreas", "kang_pbmc_stim"])
    p.add_argument("--data-dir", type=Path, default=None, help="default: sccluster.settings.datasetdir")
    p.add_argument("--batch-column", default="batch")
    args = p.parse_args(argv)
    print(table(args.csvs, args.datasets, args.data_dir or default_data_dir(), args.batch_column))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
