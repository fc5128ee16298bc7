#!/usr/bin/env python
"""Annotation benchmark (issue #24): clusters -> ``tl.annotate`` with the shipped marker sets -> per-cell scores.

Example::

    python benchmarks/annotation.py            # writes benchmarks/results/annotation.csv and docs/benchmarks/transfer.md

No model is fitted here: the partitions are the k-auto runs stored by ``run.py`` (3 seeds each) in
``benchmarks/results/bgformer.csv``, ``siamese.csv``, ``baselines.csv`` (leiden, stability-chosen resolution) and
``batch.csv`` (the same methods with ``batch_key="batch"``). Each dataset is prepared (``pp.prepare``), a
partition attached, and its clusters annotated with the shipped set of :data:`MARKER_SET` (defaults of
``tl.annotate``). The labels only score: every cell's truth is mapped to the marker set's vocabulary by
:data:`TRUTH_TO_MARKERS`, written before any run; a true type without a set in the shipped file should come
out ``"unassigned"``. Per-cell accuracy and macro-F1 (over the mapped true types), and the share of cells in
unassigned clusters.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P

DATASETS = ("baron_human_pancreas", "kang_pbmc_stim", "pbmc68k_reduced")
MARKER_SET = {
    "baron_human_pancreas": "human_pancreas",
    "kang_pbmc_stim": "human_pbmc",
    "pbmc68k_reduced": "human_pbmc",
}
UNASSIGNED = "unassigned"
#: Each dataset's label -> the shipped set's cell-type name (None: the set has no such type, the right call is
#: "unassigned"). Written from the label and set names alone, before the benchmark was run.
TRUTH_TO_MARKERS = {
    "baron_human_pancreas": {t: t for t in (
        "pancreatic A cell", "type B pancreatic cell", "pancreatic D cell", "pancreatic PP cell",
        "pancreatic epsilon cell", "pancreatic acinar cell", "pancreatic ductal cell", "pancreatic stellate cell",
        "endothelial cell", "macrophage", "mast cell", "Schwann cell", "T cell")},
    "kang_pbmc_stim": {
        "CD14+ Monocytes": "CD14+ monocyte", "FCGR3A+ Monocytes": "CD16+ monocyte", "B cells": "B cell",
        "CD4 T cells": "CD4+ T cell", "CD8 T cells": "CD8+ T cell",
    },
    "pbmc68k_reduced": {
        "CD14+ Monocyte": "CD14+ monocyte", "CD19+ B": "B cell", "CD4+/CD25 T Reg": "CD4+ T cell",
        "CD4+/CD45RO+ Memory": "CD4+ T cell", "CD4+/CD45RA+/CD25- Naive T": "CD4+ T cell",
        "CD8+ Cytotoxic T": "CD8+ T cell", "CD8+/CD45RA+ Naive Cytotoxic": "CD8+ T cell",
        "CD56+ NK": "natural killer cell", "Dendritic": "conventional dendritic cell", "CD34+": None,
    },
}  # fmt: skip
#: (label in the tables, CSV, method, params JSON) of the partitions annotated.
SOURCES = (
    ("bgformer", "bgformer.csv", "bgformer", "{}"),
    ("siamese", "siamese.csv", "siamese", "{}"),
    ("leiden", "baselines.csv", "leiden", "{}"),
    ("bgformer (batch_key)", "batch.csv", "bgformer", '{"batch_key": "batch"}'),
    ("siamese (batch_key)", "batch.csv", "siamese", '{"batch_key": "batch"}'),
    ("leiden (batch_key)", "batch.csv", "leiden", '{"batch_key": "batch"}'),
    # BGFormer's previous default (decision 0019), kept for comparison
    ("bgformer (noise_std=2.5)", "bgformer.csv", "bgformer", '{"noise_std": 2.5}'),
    (
        "bgformer (batch_key, noise_std=2.5)",
        "batch.csv",
        "bgformer",
        '{"batch_key": "batch", "noise_std": 2.5}',
    ),
)
COLUMNS = ["dataset", "source", "seed", "n_clusters", "accuracy", "macro_f1", "pct_unassigned", "git_commit"]


def partitions(results: Path) -> list[dict]:
    import pandas as pd

    rows = []
    for label, name, method, params in SOURCES:
        df = pd.read_csv(results / name)
        df = df[(df["method"] == method) & (df["params"].fillna("{}") == params) & (df["k_mode"] == "auto")
                & df["dataset"].isin(DATASETS) & df["partition"].notna()]  # fmt: skip
        rows += [{"source": label, "dataset": r.dataset, "seed": int(r.seed), "partition": r.partition}
                 for r in df.itertuples()]  # fmt: skip
    return rows


def score(dataset: str, partition: str, data_dir: Path) -> dict:
    from sklearn.metrics import f1_score

    import sccluster as scc

    adata = scc.read(data_dir / f"{dataset}.h5ad")
    labels, data = C.counts_only(adata, "cell_type")
    clusters = np.asarray(C.decode_partition(partition))
    if len(clusters) != data.n_obs:
        raise SystemExit(f"error: a {dataset} partition has {len(clusters)} cells, the data {data.n_obs}")
    scc.pp.prepare(data)
    if data.n_obs != len(clusters):
        raise SystemExit(
            f"error: pp.prepare removed cells of {dataset}; the stored partitions no longer align"
        )
    data.obs["cluster"] = [str(c) for c in clusters]
    data.obs["cluster"] = data.obs["cluster"].astype("category")
    scc.tl.annotate(data, MARKER_SET[dataset], groupby="cluster", key_added="annotation")
    called = data.obs["annotation"].astype(str).to_numpy()
    mapping = TRUTH_TO_MARKERS[dataset]
    truth = np.asarray([mapping[t] or UNASSIGNED for t in labels], dtype=object)
    types = np.unique(truth)
    return {"n_clusters": int(len(np.unique(clusters))), "accuracy": float(np.mean(called == truth)),
            "macro_f1": float(f1_score(truth, called, labels=types, average="macro", zero_division=0)),
            "pct_unassigned": float(100 * np.mean(called == UNASSIGNED))}  # fmt: skip


def table(path: Path) -> str:
    import pandas as pd

    df = pd.read_csv(path)
    lines = ["### Annotation: clusters (k auto) named with the shipped marker sets", "",
             "| clusters from | " + " | ".join(f"{d} acc | {d} macro-F1" for d in DATASETS) + " |",
             "|---|" + "---|---|" * len(DATASETS)]  # fmt: skip
    for source, g in df.groupby("source", sort=False):
        cells = []
        for d in DATASETS:
            s = g[g["dataset"] == d]
            cells += [C.fmt_mean_std(s["accuracy"]), C.fmt_mean_std(s["macro_f1"])]
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    lines += ["", "Truth mapped to the sets' names (`benchmarks/annotation.py`, TRUTH_TO_MARKERS): " + "; ".join(
        f"{d}: " + ", ".join(f"{k} → {v or UNASSIGNED}" for k, v in TRUTH_TO_MARKERS[d].items() if k != v)
        for d in DATASETS if any(k != v for k, v in TRUTH_TO_MARKERS[d].items())) + "."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--csv", type=Path, default=C.REPO_ROOT / "benchmarks" / "results" / "annotation.csv")
    p.add_argument("--markdown", type=Path, default=C.REPO_ROOT / "docs" / "benchmarks" / "transfer.md")
    p.add_argument("--no-markdown", action="store_true")
    args = p.parse_args(argv)
    data_dir = args.data_dir or P.default_data_dir()
    commit = P.git_commit()
    done = set()
    if args.csv.is_file():
        with open(args.csv, newline="") as fh:
            done = {(r["dataset"], r["source"], r["seed"]) for r in csv.DictReader(fh)}
    new = not args.csv.is_file() or args.csv.stat().st_size == 0
    with open(args.csv, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for job in partitions(C.REPO_ROOT / "benchmarks" / "results"):
            if (job["dataset"], job["source"], str(job["seed"])) in done:
                continue
            row = score(job["dataset"], job["partition"], data_dir)
            row.update(dataset=job["dataset"], source=job["source"], seed=job["seed"], git_commit=commit)
            writer.writerow(row)
            fh.flush()
            print(json.dumps(row), flush=True)
    if not args.no_markdown:
        body = "\n".join(P.provenance_lines(sys.argv)) + "\n\n" + table(args.csv)
        C.replace_section(args.markdown, "annotation-results", body,
                          intro="# Classification, label transfer and novelty\n")  # fmt: skip
        print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
