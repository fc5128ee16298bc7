#!/usr/bin/env python
"""With and without ``batch_key``: quality and batch mixing of the partitions stored in run.py CSVs.

Example::

    python benchmarks/batch_mixing.py benchmarks/results/bgformer.csv benchmarks/results/bgformer-batch.csv \\
        benchmarks/results/baselines.csv --datasets baron_human_pancreas kang_pbmc_stim

Reads the partitions that ``run.py`` keeps in its CSVs (no fit) and the batch column of each dataset
(``obs["batch"]`` by default). Per (method and parameters, k mode, dataset), over seeds:

- ``ARI`` against the annotation (scored afterwards, as everywhere);
- ``single-batch clusters``: clusters with more than 90 % of their cells from one batch, a label-free count of
  clusters that may be a batch rather than a cell type (a type present in one batch only is one too);
- ``batch entropy``: the mean over cells of the normalised entropy of the batches in the cell's cluster (1 when
  every cluster holds the batches in the proportions of the whole dataset, 0 when every cluster is one batch);
  label-free.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from _provenance import default_data_dir  # noqa: E402

SINGLE_BATCH_SHARE = 0.9


def mixing(partition: np.ndarray, batches: np.ndarray) -> tuple[int, float]:
    """``(single-batch clusters, mean normalised batch entropy of the cells' clusters)``."""
    tab = pd.crosstab(partition, batches).to_numpy(dtype=float)
    sizes = tab.sum(axis=1)
    single = int((tab.max(axis=1) > SINGLE_BATCH_SHARE * sizes).sum())
    n_batches = tab.shape[1]
    if n_batches < 2:
        return single, float("nan")
    p = tab / sizes[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1) / np.log(n_batches)
    return single, float((ent * sizes).sum() / sizes.sum())


def table(csvs: list[Path], datasets: list[str], data_dir: Path, batch_col: str) -> str:
    runs = pd.concat([pd.read_csv(f) for f in csvs], ignore_index=True)
    runs = runs[(runs["status"] == "ok") & runs["dataset"].isin(datasets) & runs["partition"].notna()]
    runs = runs.assign(variant=[m + (f" ({lab})" if (lab := C.params_label(p)) else "")
                                for m, p in zip(runs["method"], runs["params"].fillna("{}"))])  # fmt: skip
    import anndata as ad

    batches = {d: ad.read_h5ad(data_dir / f"{d}.h5ad", backed="r").obs[batch_col].astype(str).to_numpy() for d in datasets}
    head = "| method | k | dataset | seeds | ARI | k found | single-batch clusters | batch entropy |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for (variant, k_mode, dataset), g in runs.groupby(["variant", "k_mode", "dataset"], sort=True):
        stats = [mixing(np.asarray(C.decode_partition(p)), batches[dataset]) for p in g["partition"]]
        single = np.mean([s for s, _ in stats])
        entropy = np.mean([e for _, e in stats])
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
