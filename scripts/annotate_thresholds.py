"""Synthetic study behind the defaults of ``tl.annotate`` (decision record 0014): alpha and min_score.

Planted data only (``sccluster.datasets.synthetic``): 8 clusters of unequal sizes, 2,000 genes, 20 planted
markers per cluster at fold change ``fc``. Marker sets: 8 of the 20 planted markers of clusters 0-5 (clusters
6 and 7 have no set: they must come out "unassigned") and 2 decoy sets of 8 random non-marker genes (a type
absent from the data: never to be called). fc = 1 is the null (no cluster has markers): every call is false.

Run: PYTHONPATH=src python scripts/annotate_thresholds.py  (about a minute)
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

import sccluster as scc

scc.settings.verbosity = 1  # warnings only, no progress bars
FOLD_CHANGES = (1.0, 1.25, 1.5, 2.0, 3.0)
ALPHAS = (0.01, 0.05, 0.1)
MIN_SCORES = (0.0, 0.1, 0.25)
SEEDS = range(5)
N_MARKED, N_CLUSTERS, SET_SIZE = 6, 8, 8

rows = []
for fc, seed in itertools.product(FOLD_CHANGES, SEEDS):
    adata = scc.datasets.synthetic(
        n_cells=2000,
        n_genes=2000,
        n_clusters=N_CLUSTERS,
        n_markers=20,
        fold_change=fc,
        proportions=[0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02],
        random_state=seed,
    )
    scc.pp.prepare(adata)
    adata.obs["cluster"] = adata.obs["cell_type"].astype(str)
    rng = np.random.default_rng(100 + seed)
    sets = {f"type_{k}": [f"gene_{k * 20 + i}" for i in range(SET_SIZE)] for k in range(N_MARKED)}
    decoys = rng.choice(np.arange(N_CLUSTERS * 20, 2000), size=(2, SET_SIZE), replace=False)
    sets.update({f"decoy_{d}": [f"gene_{g}" for g in decoys[d]] for d in range(2)})
    for alpha, min_score in itertools.product(ALPHAS, MIN_SCORES):
        table = scc.tl.annotate(
            adata,
            sets,
            groupby="cluster",
            key_added="ann",
            alpha=alpha,
            min_score=min_score,
            random_state=seed,
        )
        call = dict(zip(table["cluster"], table["cell_type"], strict=True))
        marked = [f"type_{k}" for k in range(N_MARKED)]
        unmarked = [f"type_{k}" for k in range(N_MARKED, N_CLUSTERS)]
        rows.append({
            "fc": fc, "seed": seed, "alpha": alpha, "min_score": min_score,
            "correct": sum(call[c] == c for c in marked) / N_MARKED if fc > 1 else np.nan,
            "false_calls": sum(call[c] != "unassigned" and call[c] != c for c in call),
            "unmarked_called": sum(call[c] != "unassigned" for c in unmarked),
            "decoy_called": sum(v.startswith("decoy") for v in call.values()),
        })  # fmt: skip

res = pd.DataFrame(rows)
summary = (
    res.groupby(["fc", "alpha", "min_score"])
    .agg(
        correct=("correct", "mean"),
        false_calls=("false_calls", "sum"),
        unmarked_called=("unmarked_called", "sum"),
        decoy_called=("decoy_called", "sum"),
    )
    .reset_index()
)
print(
    f"{len(SEEDS)} seeds; false_calls / unmarked_called / decoy_called are totals over the seeds "
    f"({N_CLUSTERS * len(SEEDS)} clusters per row)"
)
print(summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
