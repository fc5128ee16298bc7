#!/usr/bin/env python
"""Held-out ZINB likelihood: how much of the expression a deep model's embedding keeps (issue #29).

Example (one model setting per call; rows of several settings share a CSV)::

    python benchmarks/heldout.py --method bgformer --seeds 0 1 2 --csv benchmarks/results/heldout-zinb.csv --resume
    python benchmarks/heldout.py --method bgformer --param noise_std=1.0 --seeds 0 1 2 \\
        --csv benchmarks/results/heldout-zinb.csv --resume
    python benchmarks/heldout.py --from-csv benchmarks/results/heldout-zinb.csv

For every (setting, dataset, seed) the cells are split at random (seeded by the seed alone, so every
setting sees the same split): :data:`HELD_SHARE` of them, at most :data:`MAX_HELD` cells, are held out. The
model is fitted on the others with ``n_clusters=None`` and ``cluster_steps=0`` (the pretrained encoder,
the space its k-auto clusters are found in and the one label transfer reads), after ``pp.prepare`` on
those cells only. Label-free columns (these may decide something):

- ``heldout_zinb``: :meth:`~sccluster.models._deep.DeepClusterModel.reconstruction_error` of the held-out
  cells (mean ZINB negative log-likelihood per cell × gene entry, nats; lower keeps more);
- ``train_zinb``: the same on as many training cells (the gap to ``heldout_zinb`` is over-fitting);
- ``auto_k`` (clusters of the Leiden partition at the automatic resolution) and ``effective_dim``
  (participation ratio of the embedding's covariance eigenvalues).

Label-scored columns (read afterwards, never used for a choice): ``ari_auto`` (that partition against the
training cells' labels) and ``ari_kmeans_k_given`` (k-means with the true number of types on the
embedding, 10 starts: where the k-given clustering stage starts from).
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
from diagnostics import spectrum_stats

HELD_SHARE = 0.1
MAX_HELD = 2000
COLUMNS = [
    "method", "params", "dataset", "seed", "n_train", "n_held", "heldout_zinb", "train_zinb", "auto_k",
    "effective_dim", "ari_auto", "ari_kmeans_k_given", "time_s", "git_commit",
]  # fmt: skip


def held_out_cells(n_obs: int, seed: int) -> np.ndarray:
    """Sorted positions of the held-out cells: the same for every setting at a given seed."""
    rng = np.random.default_rng([seed, 29])
    n_held = min(max(int(round(HELD_SHARE * n_obs)), 100), MAX_HELD, n_obs // 2)
    return np.sort(rng.choice(n_obs, n_held, replace=False))


def measure(method: str, params: dict, path: Path, seed: int) -> dict:
    """One row: fit on the training cells, score the held-out ones; labels read only at the end."""
    from sklearn.cluster import KMeans

    import sccluster as scc
    from sccluster.models import get_model_class

    scc.settings.verbosity = 1
    C.package_logs_to_stderr()
    labels, adata = C.counts_only(scc.read(path), "cell_type")
    held = held_out_cells(adata.n_obs, seed)
    train = np.setdiff1d(np.arange(adata.n_obs), held, assume_unique=True)
    train_data, held_data = adata[train].copy(), adata[held].copy()
    start = time.perf_counter()
    scc.pp.prepare(train_data)
    cls = get_model_class(method)
    model = cls(n_clusters=None, random_state=seed, **{**params, "cluster_steps": 0}).fit(train_data)
    elapsed = time.perf_counter() - start
    same_size = np.sort(np.random.default_rng([seed, 30]).choice(len(train), len(held), replace=False))
    emb = np.asarray(model.embedding_, dtype=np.float64)
    row = {
        "n_train": len(train), "n_held": len(held), "time_s": round(elapsed, 1),
        "heldout_zinb": round(model.reconstruction_error(held_data), 6),
        "train_zinb": round(model.reconstruction_error(adata[train[same_size]].copy()), 6),
        "auto_k": int(len(np.unique(model.labels_))), "effective_dim": round(spectrum_stats(emb)[0], 2),
    }  # fmt: skip
    # ---- labels from here on: scores only
    truth = labels[train]
    kmeans = KMeans(len(set(truth)), n_init=10, random_state=seed).fit_predict(emb)
    row.update(ari_auto=round(scc.metrics.ari(truth, model.labels_), 4),
               ari_kmeans_k_given=round(scc.metrics.ari(truth, kmeans), 4))  # fmt: skip
    return row


def summary_table(csv_path: Path) -> str:
    """Markdown: per setting, the held-out NLL relative to the default's (same dataset and seed), and scores."""
    import pandas as pd

    df = pd.read_csv(csv_path, keep_default_na=False)
    df["setting"] = C.variant_labels(df)
    base = df[df["params"].isin(["{}", ""])].set_index(["method", "dataset", "seed"])["heldout_zinb"]
    key = pd.MultiIndex.from_frame(df[["method", "dataset", "seed"]])
    df["rel"] = 100 * (df["heldout_zinb"].to_numpy() / base.reindex(key).to_numpy() - 1)
    per = df.groupby(["setting", "dataset"]).mean(numeric_only=True).reset_index()
    lines = ["| setting | datasets × seeds | held-out NLL vs default (%, mean) | lower on datasets | train − held-out gap "
             "(%) | effective dim | k auto | ARI auto* | ARI k-means k given* |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for setting, g in per.groupby("setting", sort=False):
        rows = df[df["setting"] == setting]
        gap = 100 * (rows["train_zinb"] / rows["heldout_zinb"] - 1)
        lines.append(
            f"| {setting} | {g['dataset'].nunique()} × {rows['seed'].nunique()} | {g['rel'].mean():+.2f} | "
            f"{int((g['rel'] < 0).sum())} of {len(g)} | {gap.mean():+.2f} | {g['effective_dim'].mean():.1f} | "
            f"{g['auto_k'].mean():.1f} | {g['ari_auto'].mean():.3f} | {g['ari_kmeans_k_given'].mean():.3f} |"
        )
    lines.append(
        "\n\\* scored with the labels of the training cells after the label-free columns were written."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="bgformer", choices=["bgformer", "siamese"])
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--datasets", nargs="+", default=["all"], help="'all' or dataset names")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--csv", type=Path, default=None)
    p.add_argument(
        "--from-csv", type=Path, default=None, help="print the Markdown summary of a CSV, run nothing"
    )
    p.add_argument("--resume", action="store_true")
    args = C.parse_or_summarise(p, argv, summary_table)
    if args is None:
        return 0
    from run import find_datasets

    files = find_datasets(Path(args.data_dir or P.default_data_dir()), args.datasets)
    params = C.parse_params([f"{args.method}:{x}" for x in args.param], [args.method])[args.method]
    ps = json.dumps(params, sort_keys=True)
    commit = P.git_commit()
    keys = ["method", "params", "dataset", "seed"]
    with C.resumable_csv(args.csv, COLUMNS, keys, args.resume) as (write, done):
        for seed in args.seeds:
            for path in files:
                if (args.method, ps, path.stem, str(seed)) in done:
                    continue
                row = measure(args.method, params, path, seed)
                row.update(method=args.method, params=ps, dataset=path.stem, seed=seed, git_commit=commit)
                write(row)
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
