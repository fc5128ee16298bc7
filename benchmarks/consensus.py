#!/usr/bin/env python
"""Consensus over seeds (``tl.cluster(n_seeds=N)``), scored from the partitions that ``run.py`` already stored.

Example (BGFormer, consensus of 3 seeds, for base seeds 0, 1 and 2, so seeds 0-4 of ``bgformer.csv`` are needed)::

    python benchmarks/run.py --methods bgformer --seeds 3 4 --k both --csv benchmarks/results/bgformer-seeds34.csv \\
        --no-markdown
    python benchmarks/consensus.py benchmarks/results/bgformer.csv benchmarks/results/bgformer-seeds34.csv \\
        --method bgformer --n-seeds 3 --base-seeds 0 1 2 --csv benchmarks/results/consensus.csv

``tl.cluster(random_state=s, n_seeds=N)`` fits seeds ``s, s+1, ..., s+N-1`` on the same prepared data, each exactly
as ``run.py`` fits one seed, and returns :func:`sccluster.tl._consensus.consensus_labels` of their partitions. So the
consensus of a base seed is computed here from the stored partitions of those seeds (no refit): the same labels as
the API would give, up to the numbering. Its time is the sum of the N runs' times and its memory their maximum (the
API fits the seeds one after the other). Labels only score the consensus (ARI, NMI, k found), as in ``run.py``.
Output rows have ``run.py``'s columns, with ``params`` ``{"n_seeds": N}``, so ``summary.py`` reads them as the
variant ``bgformer (n_seeds=3)``; a base seed whose N partitions are not all in the CSVs is skipped with a message.
Rows of other methods or settings already in the output CSV are kept; this method's ``{"n_seeds": N}`` rows are
replaced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
from run import CSV_COLUMNS, LABEL_KEY, find_datasets


def consensus_rows(runs, *, method: str, n_seeds: int, base_seeds: list[int], data_dir: Path) -> list[dict]:
    """One row per (dataset, k mode, base seed) whose ``n_seeds`` partitions are all in ``runs``."""
    import numpy as np

    import sccluster as scc
    from sccluster.tl._consensus import consensus_labels

    runs = runs[(runs["method"] == method) & (runs["status"] == "ok") & (runs["params"].fillna("{}") == "{}")]
    rows = []
    truth_of: dict[str, np.ndarray] = {}
    for (dataset, k_mode), group in runs.groupby(["dataset", "k_mode"], sort=True):
        by_seed = {int(r["seed"]): r for _, r in group.iterrows()}
        for base in base_seeds:
            seeds = [base + i for i in range(n_seeds)]
            missing = [s for s in seeds if s not in by_seed]
            if missing:
                print(
                    f"skipped {dataset} k {k_mode} base seed {base}: no partition of seeds {missing}",
                    flush=True,
                )
                continue
            if dataset not in truth_of:
                path = find_datasets(data_dir, [dataset])[0]
                truth_of[dataset] = scc.read(path, backed="r").obs[LABEL_KEY].astype(str).to_numpy()
            truth = truth_of[dataset]
            members = [by_seed[s] for s in seeds]
            labels = consensus_labels(
                [np.asarray(C.decode_partition(r["partition"])) for r in members]
            ).labels
            scores = scc.metrics.evaluate(truth, labels)
            first = members[0]
            row = {c: first.get(c) for c in CSV_COLUMNS}
            row.update(
                seed=base, k_found=scores["n_clusters"], ari=scores["ari"], nmi=scores["nmi"], acc=scores["acc"],
                time_s=sum(float(r["time_s"]) for r in members), fit_s=sum(float(r["fit_s"]) for r in members),
                prepare_s=first["prepare_s"], peak_rss_mb=max(float(r["peak_rss_mb"]) for r in members),
                params=json.dumps({"n_seeds": n_seeds}), partition=C.encode_partition(labels),
                note=f"consensus of seeds {seeds} from their stored partitions",
                git_commit=",".join(sorted({str(r["git_commit"]) for r in members})),
            )  # fmt: skip
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csvs", nargs="+", type=Path, help="run.py CSVs holding the single-seed partitions")
    p.add_argument("--method", default="bgformer")
    p.add_argument("--n-seeds", type=int, default=3)
    p.add_argument("--base-seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--data-dir", type=Path, default=None, help="default: sccluster.settings.datasetdir")
    p.add_argument("--csv", type=Path, default=C.REPO_ROOT / "benchmarks" / "results" / "consensus.csv")
    args = p.parse_args(argv)
    import pandas as pd

    import sccluster as scc

    runs = pd.concat([pd.read_csv(f) for f in args.csvs], ignore_index=True)
    data_dir = args.data_dir or Path(scc.settings.datasetdir)
    rows = consensus_rows(runs, method=args.method, n_seeds=args.n_seeds, base_seeds=args.base_seeds,
                          data_dir=data_dir)  # fmt: skip
    out = pd.DataFrame(rows, columns=CSV_COLUMNS)
    if args.csv.exists():  # keep the rows of other methods and settings, replace this one's
        old = pd.read_csv(args.csv, keep_default_na=False)
        ours = (old["method"] == args.method) & (old["params"] == json.dumps({"n_seeds": args.n_seeds}))
        out = pd.concat([old[~ours], out], ignore_index=True)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.csv.with_suffix(".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(args.csv)
    print(f"{len(rows)} consensus rows of {args.method} -> {args.csv} ({len(out)} rows in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
