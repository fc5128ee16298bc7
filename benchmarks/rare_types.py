#!/usr/bin/env python
"""Smallest planted cell type each method finds as a cluster of its own (synthetic counts).

Example::

    python benchmarks/rare_types.py --methods leiden kmeans bgformer siamese --seeds 0 1 2 \\
        --csv benchmarks/results/rare-types.csv

The data (:func:`make_rare_data`) are negative-binomial counts with planted types, three of them rare
(5 %, 2 % and 1 % of the cells); every type over-expresses its own marker genes. Each method is
fitted on the counts alone (k auto and k given) and each planted type is then scored: it is *found*
when one cluster holds more than half of its cells and more than half of that cluster's cells are of
the type. The row keeps, per type, the share of its cells in that cluster (0 when not found), and
the size of the smallest type found. The planted labels only score.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P

#: Shares of the planted types: five common ones, then rare types at 5 %, 2 % and 1 % of the cells.
PROPORTIONS = (0.24, 0.2, 0.18, 0.16, 0.14, 0.05, 0.02, 0.01)
COLUMNS = ["method", "params", "k_mode", "seed", "n_cells", "k_found", "ari", "smallest_found",
           "recall_by_type", "time_s", "git_commit"]  # fmt: skip


def make_rare_data(seed: int, n_cells: int = 4000, n_genes: int = 2000, fold_change: float = 4.0):
    """Counts with the planted types of :data:`PROPORTIONS` (20 marker genes each) and labels."""
    import sccluster as scc

    return scc.datasets.synthetic(
        n_cells, n_genes, len(PROPORTIONS), n_markers=20, fold_change=fold_change,
        proportions=PROPORTIONS, dropout=0.1, random_state=seed,
    )  # fmt: skip


def found_share(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """Per type: the share of its cells in the cluster that holds most of them and is mostly that type
    (see the module docstring), else 0."""
    import pandas as pd

    tab = pd.crosstab(labels, clusters)
    recall = tab.div(tab.sum(axis=1), axis=0)
    purity = tab / tab.sum(axis=0)
    out = {}
    for t in tab.index:
        ok = (recall.loc[t] > 0.5) & (purity.loc[t] > 0.5)
        out[str(t)] = float(recall.loc[t][ok].max()) if ok.any() else 0.0
    return out


def run_one(method: str, params: dict, k_mode: str, seed: int) -> dict:
    import sccluster as scc
    from sccluster.models import get_model_class

    adata = make_rare_data(seed)
    labels, data = C.counts_only(adata, "cell_type")
    scc.pp.prepare(data)
    n_clusters = len(PROPORTIONS) if k_mode == "given" else None
    start = time.perf_counter()
    model = get_model_class(method)(n_clusters=n_clusters, random_state=seed, **params).fit(data)
    elapsed = time.perf_counter() - start
    shares = found_share(labels, model.labels_)
    sizes = adata.obs["cell_type"].value_counts()
    found = [int(sizes[t]) for t, share in shares.items() if share > 0]
    return {
        "n_cells": adata.n_obs, "k_found": int(model.n_clusters_),
        "ari": round(scc.metrics.ari(labels, model.labels_), 4),
        "smallest_found": min(found) if found else "", "recall_by_type": json.dumps(shares),
        "time_s": round(elapsed, 1),
    }  # fmt: skip


def summary_table(csv_path: Path) -> str:
    """Markdown table of a rare-types CSV: per method (with its non-default parameters) and k mode, over
    seeds, the share of each planted type's cells in its own cluster (mean), how many seeds found it, the
    k found and the ARI."""
    import pandas as pd

    df = pd.read_csv(csv_path)
    shares = pd.DataFrame([json.loads(x) for x in df["recall_by_type"]])
    types = list(shares.columns)
    sizes = {t: round(p * 100, 1) for t, p in zip(types, PROPORTIONS, strict=True)}
    head = (
        ["method", "k", "seeds", "k found", "ARI* (mean ± std)"]
        + [f"{sizes[t]:g} %" for t in types]
        + ["smallest found (cells)"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    df = pd.concat([df.reset_index(drop=True), shares], axis=1)
    df["variant"] = C.variant_labels(df)
    for (variant, k_mode), g in df.groupby(["variant", "k_mode"], sort=False):
        found = [f"{int((g[t] > 0).sum())}/{len(g)}" for t in types]
        smallest = pd.to_numeric(g["smallest_found"], errors="coerce")
        lines.append(
            f"| {variant} | {k_mode} | {len(g)} | {g['k_found'].mean():.1f} | {g['ari'].mean():.3f} ± {g['ari'].std():.3f} | "
            + " | ".join(found)
            + f" | {smallest.min():.0f} (median {smallest.median():.0f}) |"
        )
    return "\n".join(lines) + (
        f"\n\nCells {int(df['n_cells'].iloc[0]):,}; a column counts the seeds in which the planted type is a cluster of its own "
        "(more than half of its cells in one cluster that is more than half that type). \\* ARI against the planted types."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--from-csv", type=Path, default=None, help="print the Markdown summary of a CSV, run nothing"
    )
    p.add_argument("--methods", nargs="+", default=["leiden", "kmeans", "bgformer", "siamese"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--k", choices=["given", "auto", "both"], default="both")
    p.add_argument("--param", action="append", default=[], metavar="METHOD:NAME=VALUE")
    p.add_argument("--csv", type=Path, default=None)
    p.add_argument("--resume", action="store_true")
    args = C.parse_or_summarise(p, argv, summary_table)
    if args is None:
        return 0
    params = C.parse_params(args.param, args.methods)
    k_modes = ["given", "auto"] if args.k == "both" else [args.k]
    commit = P.git_commit()
    keys = ["method", "params", "k_mode", "seed"]
    with C.resumable_csv(args.csv, COLUMNS, keys, args.resume) as (write, done):
        for seed in args.seeds:
            for method in args.methods:
                for k_mode in k_modes:
                    ps = json.dumps(params[method], sort_keys=True)
                    if (method, ps, k_mode, str(seed)) in done:
                        continue
                    row = run_one(method, params[method], k_mode, seed)
                    row.update(method=method, params=ps, k_mode=k_mode, seed=seed, git_commit=commit)
                    write(row)
                    print(f"{method} {k_mode} seed {seed}: {row['k_found']} clusters", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
