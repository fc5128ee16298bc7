#!/usr/bin/env python
"""Reading mini-batches from a backed ``.h5ad``: with and without the read-ahead thread of ``CountSource``.

Example (the scale study's 1M-cell file)::

    OMP_NUM_THREADS=1 python benchmarks/read_ahead.py /tmp/sccluster_scale/pbmc_4k_top2000_n1000000_seed0.h5ad

Each of ``--batches`` shuffled mini-batches of ``--batch-size`` cells is followed by a fixed amount of torch work on
one thread (``--work`` passes of log1p, a product with a genes x 256 matrix and back), standing in for a training
step. ``plain`` reads each batch when it is needed (``CountSource.batch``); ``read-ahead`` takes them from
``CountSource.iter_batches``, which reads the next batch in a background thread. Printed: milliseconds per batch for
both (alternated, ``--repeats`` times), then the read alone and the work alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, help="an .h5ad of raw counts (CSR X)")
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--work", type=int, default=3, help="passes of stand-in work per batch")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    import numpy as np
    import torch

    import sccluster as scc
    from sccluster.data import CountSource

    torch.set_num_threads(1)
    source = CountSource(scc.read(args.path, backed="r"))
    weights = torch.randn(source.n_genes, 256, generator=torch.Generator().manual_seed(0))
    n, size = args.batches, args.batch_size

    def work(batch) -> None:
        x = torch.log1p(torch.from_numpy(batch.counts))
        for _ in range(args.work):
            (x @ weights @ weights.T).sum()

    def per_batch_ms(start: float) -> str:
        return f"{(time.perf_counter() - start) / n * 1000:.1f} ms per batch"

    for repeat in range(args.repeats):
        start = time.perf_counter()
        order = np.random.default_rng(repeat).permutation(source.n_obs)
        for i in range(n):
            work(source.batch(order[i * size : (i + 1) * size]))
        print(f"plain       {per_batch_ms(start)}", flush=True)
        start = time.perf_counter()
        stream = source.iter_batches(size, shuffle=True, rng=np.random.default_rng(repeat))
        for _ in range(n):
            work(next(stream))
        stream.close()
        print(f"read-ahead  {per_batch_ms(start)}", flush=True)
    order = np.random.default_rng(args.repeats).permutation(source.n_obs)
    start = time.perf_counter()
    for i in range(n):
        source.batch(order[i * size : (i + 1) * size])
    print(f"read alone  {per_batch_ms(start)}")
    batch = source.batch(order[:size])
    start = time.perf_counter()
    for _ in range(n):
        work(batch)
    print(f"work alone  {per_batch_ms(start)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
