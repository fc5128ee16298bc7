#!/usr/bin/env python
"""Batches at scale (issue 28): two upsampled batches with a known shift, clustered with and without ``batch_key``.

Example (1M cells, the scale study's file)::

    OMP_NUM_THREADS=1 python benchmarks/batch_scale.py /tmp/sccluster_scale/pbmc_4k_top2000_n1000000_seed0.h5ad \\
        --seeds 0 1 2 --csv benchmarks/results/batch-scale.csv

Step 1 (once; skipped when the output exists) writes ``<stem>_2batches.h5ad`` beside the source, one chunk of
50,000 cells at a time: every cell goes to batch ``A`` or ``B`` with probability 1/2 (seeded), and in batch ``B``
a fixed random half of the genes keeps each count with probability ``--keep`` (binomial thinning; default 0.25,
so those genes are 4 times weaker in ``B``). This is a known, purely technical shift: the cell types (the upsampled
labels) are spread evenly over both batches, so a cluster made of one batch is the batch, not biology.

Step 2 clusters the file with ``benchmarks/out_of_core.py``'s child (read -> ``pp.prepare`` -> fit with k = the
number of label categories -> write, timed, peak RSS) in memory, once without and once with ``batch_key="batch"``.
Only ``obs["batch"]`` reaches the fit, and only in the run that is given the key; the labels only score (ARI), and
the batches score the mixing of each partition (clusters with more than 90 % of their cells from one batch, batch
entropy), whether the run was given the key or not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P
from out_of_core import add_row, run_one

BATCH_KEY = "batch"
COLUMNS = ["batch_key", "seed", "time_s", "read_prepare_s", "fit_s", "write_s", "peak_rss_mb", "ari",
           "single_batch_clusters", "batch_entropy", "n_cells", "n_genes", "method", "status", "note",
           "keep", "git_commit"]  # fmt: skip


def make_batches(source: Path, out: Path, *, keep: float, seed: int, chunk: int = 50_000) -> None:
    """Write ``out``: the cells of ``source`` split into batches A / B, half of the genes thinned in B."""
    import anndata as ad
    import h5py
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from sccluster._utils import atomic_path
    from sccluster.io._csr_h5 import write_csr_blocks

    if out.is_file():
        return
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    with h5py.File(source, "r") as src:
        n_cells, n_genes = (int(v) for v in src["X"].attrs["shape"])
        shifted = np.zeros(n_genes, dtype=bool)
        shifted[rng.choice(n_genes, n_genes // 2, replace=False)] = True
        in_b = rng.random(n_cells) < 0.5
        obs = ad.io.read_elem(src["obs"])
        var = ad.io.read_elem(src["var"])
        X = src["X"]
        indptr = X["indptr"][:]

        def blocks():
            for lo in range(0, n_cells, chunk):
                hi = min(lo + chunk, n_cells)
                a, b = int(indptr[lo]), int(indptr[hi])
                block = sp.csr_matrix(
                    (X["data"][a:b], X["indices"][a:b], indptr[lo : hi + 1] - a), shape=(hi - lo, n_genes)
                )
                rows = np.repeat(in_b[lo:hi], np.diff(block.indptr))
                thin = rows & shifted[block.indices]
                block.data[thin] = rng.binomial(block.data[thin].astype(np.int64), keep)
                block.eliminate_zeros()
                yield block

        with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
            write_csr_blocks(f, "X", blocks(), (n_cells, n_genes))
            f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
            obs[BATCH_KEY] = pd.Categorical(np.where(in_b, "B", "A"))
            ad.io.write_elem(f, "obs", obs)
            ad.io.write_elem(f, "var", var)
            info = {"source": str(source), "keep": keep, "seed": seed, "shifted_genes": int(shifted.sum())}
            ad.io.write_elem(f, "uns", {"sccluster_batch_shift": info})
            for name in ("layers", "obsm", "varm", "obsp", "varp"):
                ad.io.write_elem(f, name, {})
    print(f"made {out} ({n_cells:,} cells, {int(in_b.sum()):,} in B) in {time.perf_counter() - start:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "source", type=Path, help="labelled .h5ad of raw counts (CSR X), e.g. the scale study's 1M file"
    )
    p.add_argument("--method", default="bgformer")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument(
        "--keep", type=float, default=0.25, help="probability of keeping a count of a shifted gene in B"
    )
    p.add_argument("--data-seed", type=int, default=0, help="seed of the batch split and the shifted genes")
    p.add_argument("--variants", nargs="+", choices=["none", BATCH_KEY], default=["none", BATCH_KEY])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/sccluster_batch_scale"))
    p.add_argument("--csv", type=Path, default=C.REPO_ROOT / "benchmarks" / "results" / "batch-scale.csv")
    args = p.parse_args(argv)

    path = args.source.with_name(f"{args.source.stem}_2batches.h5ad")
    make_batches(args.source, path, keep=args.keep, seed=args.data_seed)
    commit = P.git_commit()
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            key = None if variant == "none" else BATCH_KEY
            tag = f"{args.method}_{variant}_seed{seed}"
            spec = {"path": str(path), "mode": "memory", "method": args.method, "seed": seed, "batch_key": key,
                    "score_batch": BATCH_KEY, "out": str(args.workdir / f"{tag}.h5ad"),
                    "labels": str(args.workdir / f"{tag}.npy")}  # fmt: skip
            _, row = run_one(spec, args.workdir, tag)
            row.update(
                {"batch_key": key or "", "method": args.method, "keep": args.keep, "git_commit": commit}
            )
            add_row(rows, row, COLUMNS, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
