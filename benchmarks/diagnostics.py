#!/usr/bin/env python
"""Where an embedding loses information: label-free diagnostics, scored by the labels afterwards.

Example::

    python benchmarks/diagnostics.py --methods pca bgformer siamese --datasets baron_human_pancreas \\
        --seeds 0 1 2 --csv benchmarks/results/diagnostics.csv

For every (method, dataset, seed) the script prepares the counts as ``run.py`` does (the labels are
set aside first; the method sees counts and names only) and takes one embedding:

- ``pca``: the PCA that ``LeidenBaseline`` clusters (50 components);
- a deep model: its *pretrained* embedding (the model fitted with ``n_clusters=None`` and
  ``cluster_steps=0``), the space its k-auto clusters are found in; or, with ``--embeddings DIR``,
  the final embedding of a k-auto benchmark run saved by ``run.py --save-embeddings DIR`` (no fit).

Label-free columns (these may decide something):

- ``stability_curve``: Leiden stability (mean ARI between subsample partitions, as
  ``choose_resolution``) and median k at every resolution of a wide grid; ``auto_resolution`` /
  ``auto_k``: the choice of ``choose_resolution`` with its default grid;
- ``knn_overlap_pca``: mean Jaccard index between each cell's 15 nearest neighbours in the embedding
  and in the PCA (1.0 for the PCA itself);
- ``effective_dim``: participation ratio ``(sum l)^2 / sum l^2`` of the covariance eigenvalues;
- ``dims_90``: components needed for 90 % of the variance.

Label-scored columns (read afterwards, never used for a choice): ``knn_purity`` (fraction of the 15
nearest neighbours of a cell with its label), ``ari_auto`` (Leiden at the auto resolution on the whole
embedding), ``ari_curve`` (ARI at every resolution of the wide grid), ``ari_k_given`` (Leiden with the
true number of clusters, by bisection on the resolution) and ``min_type_recall`` (per label, the largest
share of its cells that one cluster of the auto partition holds, when that cluster is mostly that label;
the smallest value over labels).

Rows go to a CSV one at a time; ``--resume`` skips rows already there.
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

WIDE_GRID = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0)
N_NEIGHBORS = 15
COLUMNS = [
    "method", "params", "embedding", "dataset", "seed", "n_cells", "true_k", "time_s",
    "auto_resolution", "auto_k", "knn_overlap_pca", "effective_dim", "dims_90", "stability_curve",
    "knn_purity", "ari_auto", "ari_k_given", "min_type_recall", "ari_curve", "git_commit",
]  # fmt: skip


def knn_sets(x: np.ndarray, k: int = N_NEIGHBORS) -> np.ndarray:
    """Indices ``(n, k)`` of each row's ``k`` nearest other rows (exact, Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(x)
    idx = nn.kneighbors(x, return_distance=False)
    return idx[:, 1:]


def knn_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Jaccard index of the rows' neighbour sets ``a`` and ``b`` (each ``(n, k)``)."""
    k = a.shape[1]
    inter = np.array([len(np.intersect1d(ra, rb, assume_unique=True)) for ra, rb in zip(a, b, strict=True)])
    return float(np.mean(inter / (2 * k - inter)))


def spectrum_stats(x: np.ndarray) -> tuple[float, int]:
    """Participation ratio of the covariance eigenvalues and the components for 90 % of the variance."""
    lam = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0, None)[::-1]
    ratio = float(lam.sum() ** 2 / (lam**2).sum())
    dims = int(np.searchsorted(np.cumsum(lam) / lam.sum(), 0.9) + 1)
    return ratio, dims


def min_type_recall(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Smallest, over label types, share of the type's cells in the one cluster that is mostly it (0 if none)."""
    import pandas as pd

    tab = pd.crosstab(labels, clusters)
    purity = tab / tab.sum(axis=0)  # share of each cluster that is each type
    recall = tab / tab.sum(axis=1).to_numpy()[:, None]
    best = [
        (recall.loc[t][purity.loc[t] > 0.5]).max() if (purity.loc[t] > 0.5).any() else 0.0 for t in tab.index
    ]
    return float(np.min(best))


def embedding_of(spec: dict, adata) -> np.ndarray:
    """The embedding a method finds k-auto clusters in (see the module docstring)."""
    from sccluster.models import get_model_class
    from sccluster.models._baselines import pca_of

    method, seed, params = spec["method"], spec["seed"], spec["params"]
    if method == "pca":
        return pca_of(adata, layer=None, n_pcs=50, n_top_genes=2000, seed=seed)
    if spec.get("embeddings"):
        path = Path(spec["embeddings"]) / f"{method}_auto_{Path(spec['path']).stem}_s{seed}.npy"
        return np.load(path).astype(np.float32)
    cls = get_model_class(method)
    model = cls(n_clusters=None, random_state=seed, **{**params, "cluster_steps": 0}).fit(adata)
    return np.asarray(model.embedding_, dtype=np.float32)


def diagnose(spec: dict) -> dict:
    """One row: the embedding's label-free diagnostics, then its labelled scores."""
    import sccluster as scc
    from sccluster.models import LeidenBaseline, choose_resolution
    from sccluster.models._baselines import pca_of
    from sccluster.models._leiden import knn_graph, leiden

    scc.settings.verbosity = 1

    C.package_logs_to_stderr()
    labels, adata = C.counts_only(scc.read(spec["path"]), "cell_type")
    scc.pp.prepare(adata)
    seed = spec["seed"]
    start = time.perf_counter()
    emb = embedding_of(spec, adata)
    elapsed = time.perf_counter() - start
    pca = pca_of(adata, layer=None, n_pcs=50, n_top_genes=2000, seed=seed)
    nn_emb = knn_sets(emb)
    overlap = 1.0 if spec["method"] == "pca" else knn_overlap(nn_emb, knn_sets(pca))
    eff, d90 = spectrum_stats(emb)
    curve = choose_resolution(emb, seed, grid=WIDE_GRID, extend=False).table
    auto = choose_resolution(emb, seed)
    graph = knn_graph(emb, seed, N_NEIGHBORS)
    auto_labels = leiden(graph, auto.resolution, seed)
    # ---- labels from here on: scores only
    true_k = len(set(labels))
    purity = float(np.mean(labels[nn_emb] == labels[:, None]))
    ari_curve = [scc.metrics.ari(labels, leiden(graph, row["resolution"], seed)) for row in curve]
    search = LeidenBaseline._search_resolution(lambda r: leiden(graph, r, seed), true_k, 1.0)
    return {
        "n_cells": adata.n_obs, "true_k": true_k, "time_s": round(elapsed, 1),
        "auto_resolution": auto.resolution, "auto_k": int(auto_labels.max() + 1),
        "knn_overlap_pca": round(overlap, 4), "effective_dim": round(eff, 2), "dims_90": d90,
        "stability_curve": json.dumps([[r["resolution"], round(r["stability"], 4), r["n_clusters"]] for r in curve]),
        "knn_purity": round(purity, 4), "ari_auto": round(scc.metrics.ari(labels, auto_labels), 4),
        "ari_k_given": round(scc.metrics.ari(labels, leiden(graph, search, seed)), 4),
        "min_type_recall": round(min_type_recall(labels, auto_labels), 4),
        "ari_curve": json.dumps([round(a, 4) for a in ari_curve]),
    }  # fmt: skip


LABEL_FREE = ["auto_k", "knn_overlap_pca", "effective_dim", "dims_90"]
SCORED = ["knn_purity", "ari_auto", "ari_k_given"]


def summary_table(csv_path: Path) -> str:
    """Markdown table of a diagnostics CSV: per dataset and embedding (method, non-default parameters and
    source), means over seeds; label-free columns first, label-scored ones after."""
    import pandas as pd

    df = pd.read_csv(csv_path, keep_default_na=False)
    df["embedding"] = [
        v if e in ("pca", "pretrained") else f"{v} ({e})"
        for v, e in zip(C.variant_labels(df), df["embedding"], strict=True)
    ]
    means = df.groupby(["dataset", "embedding"], sort=True)[LABEL_FREE + SCORED + ["true_k"]].mean()
    n = df.groupby(["dataset", "embedding"]).size()
    head = ["dataset", "embedding", "seeds", "k auto / true", "kNN overlap with PCA", "effective dim",
            "dims for 90 %", "kNN label purity*", "ARI auto*", "ARI Leiden k given*"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (dataset, emb), r in means.iterrows():
        lines.append(
            f"| {dataset} | {emb} | {n[(dataset, emb)]} | {r['auto_k']:.1f} / {r['true_k']:.0f} | {r['knn_overlap_pca']:.2f} | "
            f"{r['effective_dim']:.1f} | {r['dims_90']:.1f} | {r['knn_purity']:.3f} | {r['ari_auto']:.3f} | {r['ari_k_given']:.3f} |"
        )
    overall = df.groupby(["embedding", "dataset"])[LABEL_FREE + SCORED].mean().groupby("embedding").mean()
    for emb, r in overall.iterrows():
        lines.append(
            f"| **mean over datasets** | {emb} |  |  | {r['knn_overlap_pca']:.2f} | {r['effective_dim']:.1f} | "
            f"{r['dims_90']:.1f} | {r['knn_purity']:.3f} | {r['ari_auto']:.3f} | {r['ari_k_given']:.3f} |"
        )
    return "\n".join(lines) + "\n\n\\* scored with the labels after the label-free columns were computed."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["pca", "bgformer", "siamese"])
    p.add_argument("--datasets", nargs="+", default=None, help="dataset names (required unless --from-csv)")
    p.add_argument(
        "--from-csv", type=Path, default=None, help="print the Markdown summary of a CSV, run nothing"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--param", action="append", default=[], metavar="METHOD:NAME=VALUE")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--csv", type=Path, default=None)
    p.add_argument(
        "--embeddings", type=Path, default=None, help="saved k-auto embeddings (run.py --save-embeddings)"
    )
    p.add_argument("--resume", action="store_true")
    args = C.parse_or_summarise(p, argv, summary_table)
    if args is None:
        return 0
    if not args.datasets:
        p.error("--datasets is required unless --from-csv is given")
    data_dir = Path(args.data_dir or P.default_data_dir())
    params = C.parse_params(args.param, args.methods)
    commit = P.git_commit()
    keys = ["method", "params", "dataset", "seed"]
    with C.resumable_csv(args.csv, COLUMNS, keys, args.resume) as (write, done):
        for seed in args.seeds:
            for name in args.datasets:
                for method in args.methods:
                    ps = json.dumps(params[method], sort_keys=True)
                    if (method, ps, name, str(seed)) in done:
                        continue
                    spec = {"method": method, "params": params[method], "seed": seed,
                            "path": str(data_dir / f"{name}.h5ad"), "embeddings": args.embeddings}  # fmt: skip
                    row = diagnose(spec)
                    source = "pca" if method == "pca" else ("final" if args.embeddings else "pretrained")
                    row.update(
                        method=method, params=ps, dataset=name, seed=seed, git_commit=commit, embedding=source
                    )
                    write(row)
                    print(f"{method} {name} seed {seed}: done in {row['time_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
