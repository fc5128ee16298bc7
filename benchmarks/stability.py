#!/usr/bin/env python
"""Seed-to-seed agreement of a method's partitions: a label-free measure of stability.

Example::

    python benchmarks/stability.py --method siamese --datasets pbmc_4k_top2000 worm_neuron --seeds 0 1 2 \\
        --variant default: --variant relaxed:marginal_relaxation=1.0

For every dataset and variant the method is fitted once per seed, with k given (the number of label
categories, as in the main tables) or, with ``--k auto``, with ``n_clusters=None``, on the counts alone
(as ``run.py`` does). The table gives the mean ARI between the partitions of every pair of seeds. The
labels only set k (none at all with ``--k auto``); they score nothing here.
Each fit runs in this process, one after the other; run one invocation per dataset to use more cores
(``--csv`` per invocation, then ``--from-csv`` on the concatenation).

``--from-csv`` also takes a CSV of ``run.py``, which keeps every run's partition: its finished runs of
``--method`` in the ``--k`` mode become the variants, named by their parameters (``default`` for none), so the
agreement of a grid that has already run costs no refit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P
import run as R

COLUMNS = ["dataset", "variant", "params", "seed", "n_clusters", "time_s", "labels", "git_commit"]


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:p=v,q=w`` -> ``(name, {p: v, q: w})``; ``name:`` is the default model."""
    name, sep, rest = text.partition(":")
    if not sep or not name:
        sys.exit(f"error: --variant {text!r} must look like NAME:PARAM=VALUE[,PARAM=VALUE] or NAME:")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            sys.exit(f"error: --variant {text!r}: {item!r} must look like PARAM=VALUE")
        params[key] = C.parse_value(value)
    return name, params


def fit_labels(
    method: str, path: Path, params: dict, seed: int, k_mode: str = "given"
) -> tuple[list[int], int, float]:
    import sccluster as scc
    from sccluster.models import get_model_class

    scc.settings.verbosity = 1

    C.package_logs_to_stderr()
    labels, adata = C.counts_only(scc.read(path), R.LABEL_KEY)
    start = time.perf_counter()
    scc.pp.prepare(adata)
    k = len(set(labels)) if k_mode == "given" else None
    model = get_model_class(method)(n_clusters=k, random_state=seed, **params).fit(adata)
    return model.labels_.tolist(), int(model.n_clusters_), time.perf_counter() - start


def from_run_csv(df, method: str, datasets: list[str], seeds: list[int], k_mode: str = "given"):
    """The finished runs of ``method`` in ``k_mode`` in a ``run.py`` CSV, in this script's columns.

    Only the named datasets (all for ``all``) and seeds are kept; a CSV that holds the same run twice
    is refused (two copies of one seed would agree perfectly), and runs without a partition are named.
    """
    import pandas as pd

    runs = df[(df["method"] == method) & (df["k_mode"] == k_mode) & (df["status"] == "ok")]
    runs = runs[runs["seed"].astype(float).astype(int).isin(seeds)]
    if datasets not in (["all"], []):
        runs = runs[runs["dataset"].isin([Path(d).stem for d in datasets])]
    R.check_unique(runs)
    has = runs["partition"].notna() if "partition" in runs else pd.Series(False, index=runs.index)
    for _, r in runs[~has].iterrows():
        print(
            f"warning: {r['dataset']} seed {r['seed']} ({C.params_label(r['params']) or 'default'}) has no "
            "partition in the CSV (run by an older run.py); left out",
            file=sys.stderr,
        )
    runs = runs[has]
    if runs.empty:
        sys.exit(
            f"error: the CSV holds no finished k-{k_mode} run of {method!r} with its partition for the "
            "datasets and seeds named; rerun them with this version of run.py"
        )
    params = runs["params"].fillna("").astype(str)
    return pd.DataFrame(
        {
            "dataset": runs["dataset"],
            "variant": [C.params_label(p) or "default" for p in params],
            "params": params,
            "seed": runs["seed"],
            "time_s": runs["time_s"],
            "n_clusters": runs["true_k" if k_mode == "given" else "k_found"],
            "labels": runs["partition"],
            "git_commit": runs["git_commit"],
        },
        columns=COLUMNS,
    )


def agreement_table(df) -> str:
    """Mean (min–max) pairwise ARI between the seeds' partitions, per dataset and variant."""
    import numpy as np

    from sccluster.metrics import ari

    variants = list(dict.fromkeys(df["variant"]))
    datasets = list(dict.fromkeys(df["dataset"]))
    lines = [
        "| dataset | " + " | ".join(f"{v}: seed-to-seed ARI" for v in variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    means: dict[str, list[float]] = {}
    for d in datasets:
        cells = []
        for v in variants:
            runs = df[(df["dataset"] == d) & (df["variant"] == v)]
            parts = [C.decode_partition(x) for x in runs["labels"]]
            pairs = [ari(a, b) for a, b in itertools.combinations(parts, 2)]
            cells.append(f"{np.mean(pairs):.3f} ({min(pairs):.3f}–{max(pairs):.3f})" if pairs else "–")
            means.setdefault(v, []).append(np.mean(pairs) if pairs else np.nan)
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    complete = [i for i in range(len(datasets)) if all(np.isfinite(means[v][i]) for v in variants)]
    if len(datasets) > 1 and complete:  # only datasets where every variant has two seeds or more
        bold = [f"**{np.mean([means[v][i] for i in complete]):.3f}**" for v in variants]
        label = "mean over datasets"
        if len(complete) < len(datasets):
            label += f" ({len(complete)} with pairs)"
        lines.append(f"| **{label}** | " + " | ".join(bold) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="siamese")
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--variant", action="append", default=[], metavar="NAME:PARAM=VALUE,...")
    p.add_argument(
        "--k",
        choices=["given", "auto"],
        default="given",
        help="n_clusters = the number of label categories (given) or None (auto)",
    )
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--from-csv", type=Path, default=None, help="only render the table of this CSV")
    C.add_output_args(p, "<method>-stability", "docs/benchmarks/experiments.md")
    args = p.parse_args(argv)
    section = args.section or f"{args.method}-stability"
    if args.from_csv:
        df, csv_path = pd.read_csv(args.from_csv), args.from_csv
        if "partition" in df or "method" in df:  # a run.py CSV
            df = from_run_csv(df, args.method, args.datasets, args.seeds, args.k)
    else:
        files = R.find_datasets(Path(args.data_dir or P.default_data_dir()), args.datasets)
        variants = [parse_variant(v) for v in args.variant] or [("default", {})]
        csv_path = args.csv or C.REPO_ROOT / "benchmarks" / "results" / f"{section}.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        commit, rows = P.git_commit(), []
        for f, (name, params), seed in itertools.product(files, variants, args.seeds):
            labels, k, secs = fit_labels(args.method, f, params, seed, args.k)
            rows.append(
                {
                    "dataset": f.stem,
                    "variant": name,
                    "params": json.dumps(params, sort_keys=True),
                    "seed": seed,
                    "n_clusters": k,
                    "time_s": secs,
                    "labels": C.encode_partition(labels),
                    "git_commit": commit,
                }
            )
            print(f"{f.stem} {name} seed {seed}: {secs:.0f} s", file=sys.stderr)
            pd.DataFrame(rows, columns=COLUMNS).to_csv(csv_path, index=False)
        df = pd.DataFrame(rows, columns=COLUMNS)
    table = agreement_table(df)
    if not args.no_markdown:
        body = "\n".join(
            [
                f"## Seed-to-seed agreement: {args.method}",
                "",
                *P.provenance_lines(sys.argv if argv is None else [__file__, *argv]),
                f"- Raw rows: `{csv_path}`",
                C.commits_line(df.to_dict("records")),
                "",
                table,
            ]
        )
        C.replace_section(args.markdown, section, body)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
