"""Cut the bundled demo subset from the pbmc_4k_top2000 benchmark file.

Usage::

    python scripts/make_demo.py [--source ../shared/data/pbmc_4k_top2000.h5ad] [--n-cells 3000] [--seed 0]

Takes a uniform random sample of cells (seeded, without replacement, not chosen by label), keeps
them in their original order with raw counts (CSR float32) in ``X`` and ``obs["cell_type"]``, and
writes ``src/sccluster/datasets/_data/pbmc4k_demo.h5ad`` (gzip) plus the md5 of the source.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "pbmc_4k_top2000.h5ad"
TARGET = ROOT / "src" / "sccluster" / "datasets" / "_data" / "pbmc4k_demo.h5ad"


def md5(path: Path) -> str:
    """Hex MD5 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Write the demo subset and print its size and digest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--n-cells", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args(argv)

    import anndata as ad

    src = ad.read_h5ad(args.source)
    rng = np.random.default_rng(args.seed)
    keep = np.sort(rng.choice(src.n_obs, size=args.n_cells, replace=False))
    demo = ad.AnnData(
        X=sp.csr_matrix(src.X[keep], dtype=np.float32),
        obs=src.obs.iloc[keep][["cell_type"]].copy(),
        var=src.var[[]].copy(),
    )
    demo.obs["cell_type"] = demo.obs["cell_type"].cat.remove_unused_categories()
    source_md5 = md5(args.source)
    demo.uns["source"] = str(src.uns["source"])
    demo.uns["citation"] = str(src.uns["citation"])
    demo.uns["demo_notes"] = (
        f"{args.n_cells} of {src.n_obs} cells of {args.source.name} (md5 {source_md5}), drawn uniformly at "
        f"random without replacement with numpy.random.default_rng({args.seed}).choice, kept in source order; "
        "not chosen by label. All 2,000 genes; X = raw counts (CSR float32); labels in obs['cell_type']. "
        "Made by scripts/make_demo.py."
    )
    demo.write_h5ad(args.out, compression="gzip", compression_opts=9)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({demo.n_obs} x {demo.n_vars}, {size:,} bytes); source md5 {source_md5}")
    print(demo.obs["cell_type"].value_counts().sort_index().to_string())
    return 0 if size < 2_000_000 else 1


if __name__ == "__main__":
    sys.exit(main())
