#!/usr/bin/env python
"""Out of core: the same fit from a backed ``.h5ad`` (counts on disk) and from memory; time, peak memory, labels.

Example::

    OMP_NUM_THREADS=1 python benchmarks/out_of_core.py /tmp/sccluster_scale/pbmc_4k_top2000_n1000000_seed0.h5ad \\
        --method bgformer --seeds 0 --csv benchmarks/results/out-of-core.csv

Each (mode, seed) runs in its own child process, timed from reading the file to writing the output:
``scc.read`` (``backed="r"`` or in memory) -> ``pp.prepare`` -> ``fit`` (k = the number of label categories) ->
``io.write_h5ad`` (the backed run copies the counts from disk). ``obs`` is emptied after reading, so no label
reaches the fit; the labels only score it (ARI) and the two modes' labels are compared (identical expected).
With ``--make N`` a missing file is first made from ``--source`` by ``scc.datasets.upsample_to_h5ad`` (seed 0,
chunks of 50,000 cells: the cells of ``benchmarks/scale.py``'s file of the same size), written chunk by chunk and
never held in memory. Mode ``scanpy`` runs scanpy's standard pipeline (``scale.py``'s) on the file read into memory,
under ``--mem-limit-gb``, to record how far it gets.

10M cells on the 2-core machine::

    OMP_NUM_THREADS=1 python benchmarks/out_of_core.py /tmp/sccluster_scale/pbmc_4k_top2000_n10000000_seed0.h5ad \
        --make 10000000 --modes backed scanpy --mem-limit-gb 20 --csv benchmarks/results/out-of-core-10m.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P

LABEL_KEY = "cell_type"
COLUMNS = ["mode", "seed", "time_s", "read_prepare_s", "fit_s", "write_s", "peak_rss_mb", "ari", "same_labels_as_memory",
           "n_cells", "n_genes", "method", "status", "note", "git_commit"]  # fmt: skip


def child(spec: dict, result_path: str) -> None:
    """read -> prepare -> fit -> write in one mode; labels saved beside the result."""
    import numpy as np
    import pandas as pd

    import sccluster as scc
    from sccluster.models import get_model_class

    if spec["mode"] == "scanpy":
        scanpy_child(spec, result_path)
        return
    start = time.perf_counter()
    adata = scc.read(spec["path"], backed="r" if spec["mode"] == "backed" else None)
    truth = adata.obs[LABEL_KEY].astype(str).to_numpy()
    batch_key = spec.get("batch_key")
    for column in list(adata.obs.columns):  # nothing of obs reaches the fit but the batch column, if asked
        if column != batch_key:
            del adata.obs[column]
    scc.pp.prepare(adata)
    prepared = time.perf_counter()
    extra = {} if batch_key is None else {"batch_key": batch_key}
    model = get_model_class(spec["method"])(len(set(truth)), random_state=spec["seed"], **extra).fit(adata)
    fitted = time.perf_counter()
    adata.obs["sccluster"] = pd.Categorical(model.labels_.astype(str))  # as tl.cluster stores them
    scc.io.write_h5ad(adata, spec["out"])
    end = time.perf_counter()
    np.save(spec["labels"], model.labels_)
    C.write_result(result_path, {
        "status": "ok", "time_s": end - start, "read_prepare_s": prepared - start, "fit_s": fitted - prepared,
        "write_s": end - fitted, "ari": scc.metrics.evaluate(truth, model.labels_)["ari"], "n_cells": adata.n_obs,
        "n_genes": adata.n_vars, **batch_scores(spec, model.labels_),
    })  # fmt: skip


def batch_scores(spec: dict, labels) -> dict:
    """Label-free batch mixing of a partition (clusters > 90 % one batch, batch entropy), for ``spec["score_batch"]``."""
    key = spec.get("score_batch")
    if key is None:
        return {}
    import sccluster as scc

    batches = scc.read(spec["path"], backed="r").obs[key].to_numpy()
    return {"single_batch_clusters": scc.metrics.single_batch_clusters(labels, batches),
            "batch_entropy": scc.metrics.batch_entropy(labels, batches)}  # fmt: skip


def scanpy_child(spec: dict, result_path: str) -> None:
    """scanpy's pipeline on the file read into memory, a step marker after each step."""
    import anndata as ad
    from scale import _scanpy_steps

    import sccluster as scc

    start = time.perf_counter()
    adata = ad.read_h5ad(spec["path"])
    C.mark_step("read")
    truth = adata.obs[LABEL_KEY].astype(str).to_numpy()
    _scanpy_steps(adata, seed=spec["seed"], scale=False, mark=C.mark_step)
    adata.write_h5ad(spec["out"])
    C.mark_step("write")
    ari = scc.metrics.evaluate(truth, adata.obs["leiden"].to_numpy())["ari"]
    C.write_result(result_path, {"status": "ok", "time_s": time.perf_counter() - start, "ari": ari,
                                 "n_cells": adata.n_obs, "n_genes": adata.n_vars})  # fmt: skip


def make(path: Path, n_cells: int, source: str) -> None:
    """Write the upsampled file chunk by chunk (nothing is done when it exists)."""
    import sccluster as scc

    if path.is_file():
        return
    start = time.perf_counter()
    scc.datasets.upsample_to_h5ad(scc.datasets.load(source), n_cells, path, seed=0)
    print(f"made {path} ({n_cells:,} cells) in {time.perf_counter() - start:.0f} s", flush=True)


def run_one(spec: dict, workdir: Path, tag: str):
    """Run one child for ``spec`` and delete its output: ``(outcome, row)``, the row holding the child's result,
    the seed, the peak memory, the status and, for a failure, a note with the last step reached."""
    res = C.run_child([sys.executable, __file__, "--child", json.dumps(spec)], workdir=workdir, tag=tag)
    Path(spec["out"]).unlink(missing_ok=True)
    note = "" if res.status == "ok" else f"{res.note} (last step: {res.steps[-1] if res.steps else 'none'})"
    row = {**(res.result or {}), "seed": spec["seed"], "peak_rss_mb": res.peak_rss_mb, "status": res.status,
           "note": note}  # fmt: skip
    return res, row


def add_row(rows: list[dict], row: dict, columns: list[str], csv: Path) -> None:
    """Append ``row`` (its ``columns``) to ``rows``, print it, and rewrite ``csv`` with every row so far."""
    import pandas as pd

    rows.append({c: row.get(c) for c in columns})
    print(rows[-1], flush=True)
    csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(csv, index=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, nargs="?", help="labelled .h5ad of raw counts")
    p.add_argument("--method", default="bgformer")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--modes", nargs="+", choices=["memory", "backed", "scanpy"], default=["memory", "backed"])
    p.add_argument(
        "--make", type=int, default=None, metavar="N", help="make a missing file of N upsampled cells"
    )
    p.add_argument("--source", default="pbmc_4k_top2000", help="dataset upsampled by --make")
    p.add_argument("--mem-limit-gb", type=float, default=None, help="address-space limit of every child")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/sccluster_out_of_core"))
    p.add_argument("--csv", type=Path, default=C.REPO_ROOT / "benchmarks" / "results" / "out-of-core.csv")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(json.loads(args.child), args.result)
        return 0
    import numpy as np

    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.make is not None:
        make(args.path, args.make, args.source)
    commit = P.git_commit()  # the code the children run
    rows = []
    for seed in args.seeds:
        labels = {}
        for mode in args.modes:
            tag = f"{args.method}_{mode}_seed{seed}"
            spec = {"path": str(args.path), "mode": mode, "method": args.method, "seed": seed,
                    "out": str(args.workdir / f"{tag}.h5ad"), "labels": str(args.workdir / f"{tag}.npy")}  # fmt: skip
            res, row = run_one(spec, args.workdir, tag)
            row.update({"mode": mode, "git_commit": commit,
                        "method": args.method if mode != "scanpy" else "scanpy (no scale)"})  # fmt: skip
            if res.status == "ok":
                labels[mode] = np.load(spec["labels"])
                if "memory" in labels and mode != "memory":
                    row["same_labels_as_memory"] = bool(np.array_equal(labels["memory"], labels[mode]))
            add_row(rows, row, COLUMNS, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
