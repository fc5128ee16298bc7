#!/usr/bin/env python
"""Data-parallel training (torchrun) against one process, and the cost of SiameseClu's single-node graph step.

Examples::

    # labels of N processes against one process, on a real dataset (k given), 3 seeds
    python benchmarks/distributed.py agreement --dataset pbmc_4k_top2000 --methods bgformer \\
        --worlds 1 2 --seeds 0 1 2 --csv benchmarks/results/distributed.csv

    # seconds and peak memory of SiameseClu's scaler + PCA + kNN graph + diffusion at n cells
    python benchmarks/distributed.py graph --n-cells 100000 200000 --csv benchmarks/results/siamese-graph.csv

``agreement`` runs the command line as a user would (``torchrun --standalone --nproc-per-node N -m sccluster
cluster ...``, gloo on CPU) and keeps, per run, the ARI against the labels (scoring only), the ARI against the
one-process run of the same seed, the clusters found and the wall time. Both CSVs are resumable: rows already
there are skipped.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P

AGREEMENT = ["dataset", "method", "world_size", "seed", "k_mode", "k_found", "ari", "ari_vs_one_process",
             "wall_s", "git_commit"]  # fmt: skip
GRAPH = ["n_cells", "seconds", "peak_rss_mb", "git_commit"]


def _done(path: Path, keys: list[str]) -> set[tuple]:
    if not path.exists():
        return set()
    with open(path, newline="") as fh:
        return {tuple(row[k] for k in keys) for row in csv.DictReader(fh)}


def _append(path: Path, columns: list[str], row: dict) -> None:
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _labels(path: Path) -> np.ndarray:
    import pandas as pd

    return pd.read_csv(path, index_col=0).iloc[:, 0].to_numpy()


def agreement(args: argparse.Namespace) -> None:
    import anndata as ad

    from sccluster.metrics import adjusted_rand_index

    data = Path(args.data_dir) / f"{args.dataset}.h5ad"
    truth_all = ad.read_h5ad(data, backed="r").obs[args.label_key].astype(str)
    n_true = truth_all.nunique()
    done = _done(args.csv, ["method", "world_size", "seed"])
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(args.worlds)))}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            for seed in args.seeds:
                one = None
                for world in sorted(args.worlds):
                    csv_out = Path(tmp) / f"{method}-{seed}-{world}.csv"
                    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
                           "-m", "sccluster", "-q", "cluster", str(data), "-o", str(Path(tmp) / "out.h5ad"),
                           "--method", method, "--seed", str(seed), "--n-clusters", str(n_true),
                           "--labels-csv", str(csv_out), "--param", "device=cpu"]  # fmt: skip
                    start = time.perf_counter()
                    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    wall = time.perf_counter() - start
                    if proc.returncode != 0:
                        raise SystemExit(f"{method} seed {seed} world {world} failed:\n{proc.stderr[-3000:]}")
                    labels = _labels(csv_out)
                    if world == 1:
                        one = labels
                    if (method, str(world), str(seed)) in done:
                        continue
                    truth = truth_all.loc[_cells(csv_out)].to_numpy()
                    _append(args.csv, AGREEMENT, {
                        "dataset": args.dataset, "method": method, "world_size": world, "seed": seed,
                        "k_mode": "given", "k_found": len(np.unique(labels)),
                        "ari": round(adjusted_rand_index(truth, labels), 4),
                        "ari_vs_one_process": "" if one is None else round(adjusted_rand_index(one, labels), 4),
                        "wall_s": round(wall, 1), "git_commit": P.git_commit(),
                    })  # fmt: skip
                    print(f"{method} seed {seed} world {world}: {wall:.0f} s", flush=True)


def _cells(path: Path):
    import pandas as pd

    return pd.read_csv(path, index_col=0).index


def graph(args: argparse.Namespace) -> None:
    done = _done(args.csv, ["n_cells"])
    for n in args.n_cells:
        if (str(n),) in done:
            continue
        code = f"""
import time, resource, json, sys
import anndata as ad
import sccluster as scc
from sccluster.data import CountSource
from sccluster.models import SiameseClu
from sccluster.models._siamese_features import build_cell_graph
from sccluster.pp import select_genes
base = ad.read_h5ad({str(Path(args.data_dir) / args.dataset) + ".h5ad"!r})
adata = scc.datasets.upsample(base, {n}, seed=0, label_key={args.label_key!r})
scc.pp.prepare(adata)
from sccluster.models._siamese_config import SiameseConfig
cfg = SiameseConfig.from_params(SiameseClu().get_params())
source = CountSource(adata, genes=list(select_genes(adata, 2000)))
t = time.perf_counter()
build_cell_graph(source, cfg.input.max_value, cfg.graph, None, None, 0)
sec = time.perf_counter() - t
print(json.dumps({{"seconds": sec, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        import json

        out = json.loads(proc.stdout.strip().splitlines()[-1])
        _append(args.csv, GRAPH, {"n_cells": n, "seconds": round(out["seconds"], 1),
                                  "peak_rss_mb": round(out["peak"]), "git_commit": P.git_commit()})  # fmt: skip
        print(f"graph at {n} cells: {out['seconds']:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("agreement")
    a.add_argument("--methods", nargs="+", default=["bgformer"])
    a.add_argument("--worlds", nargs="+", type=int, default=[1, 2])
    a.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    a.add_argument("--csv", type=Path, default=Path("benchmarks/results/distributed.csv"))
    g = sub.add_parser("graph")
    g.add_argument("--n-cells", nargs="+", type=int, default=[100_000, 200_000])
    g.add_argument("--csv", type=Path, default=Path("benchmarks/results/siamese-graph.csv"))
    for p in (a, g):
        p.add_argument("--dataset", default="pbmc_4k_top2000")
        p.add_argument("--label-key", default="cell_type")
        p.add_argument("--data-dir", default=str(P.default_data_dir()))
    args = parser.parse_args()
    C.package_logs_to_stderr()
    (agreement if args.command == "agreement" else graph)(args)


if __name__ == "__main__":
    main()
