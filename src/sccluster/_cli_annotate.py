"""``sccluster markers`` and ``sccluster annotate``: marker genes and marker-based names of clusters.

Both read a clustered ``.h5ad`` whose ``X`` is log-normalised (the output of ``sccluster cluster``, or
any AnnData prepared by :func:`sccluster.pp.prepare` / scanpy's ``log1p``). A file with raw counts in
``X`` is refused with the remedy (one ``error:`` line, exit 2), as :func:`sccluster.tl.markers` and
:func:`sccluster.tl.annotate` do: clustering prepares the data, these commands never change the cells or
genes of the input. The input file is never modified; outputs are written atomically.
"""

from __future__ import annotations

import argparse
import logging

from ._cli_params import positive_int_arg, seed_arg
from ._errors import InputError

#: Genes per group printed by ``sccluster markers`` (the CSV has all ``--n-genes``).
PRINTED_GENES = 8


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    """Register the ``markers`` and ``annotate`` subcommands on the ``sccluster`` subparsers."""
    from .tl._marker_sets import shipped_names
    from .tl._markers import MAX_CELLS_PER_GROUP, METHODS

    p = sub.add_parser(
        "markers",
        parents=[common],
        help="marker genes of each cluster",
        description="Rank the genes of each group of obs[GROUPBY] against all other cells (scanpy's "
        f"rank_genes_groups on log-normalised X, at most {MAX_CELLS_PER_GROUP:,} seeded cells per "
        "group) and print the top genes of each group; -o writes the tidy table as CSV.",
    )
    p.add_argument(
        "input",
        metavar="IN.h5ad",
        help="clustered AnnData with log-normalised X (e.g. written by 'sccluster cluster')",
    )
    p.add_argument(
        "--groupby", default="sccluster", metavar="KEY", help="obs column of the groups (default: sccluster)"
    )
    p.add_argument(
        "--n-genes",
        type=positive_int_arg,
        default=25,
        metavar="N",
        help="genes per group kept in the table (default: 25)",
    )
    p.add_argument("--method", default="wilcoxon", choices=METHODS, help="test (default: wilcoxon)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the per-group subsample (default: 0)")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="OUT.csv",
        help="write the table (group, rank, gene, score, logfoldchange, pval, pval_adj, frac_in, "
        "frac_out) as CSV, atomically",
    )
    p.set_defaults(func=_cmd_markers)

    p = sub.add_parser(
        "annotate",
        parents=[common],
        help="name clusters after marker gene sets",
        description="Score every group of obs[GROUPBY] against every marker set (mean standardised "
        "expression of the set's genes against expression-matched random gene sets; empirical "
        "p-values, Benjamini-Hochberg), name each group after its best significant set or "
        "'unassigned', write OUT.h5ad with obs[KEY], obs[KEY_score], uns[KEY] (per-cluster table) "
        "and print the table. Offline: nothing is downloaded.",
    )
    p.add_argument(
        "input", metavar="IN.h5ad", help="clustered AnnData with log-normalised X and gene symbols"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT.h5ad", help="output .h5ad (written atomically)"
    )
    p.add_argument(
        "--markers",
        required=True,
        metavar="FILE|NAME",
        help="marker sets: a .csv (cell_type,gene), .tsv, .gmt or .json file, or a shipped set: "
        f"{', '.join(shipped_names())}",
    )
    p.add_argument(
        "--groupby",
        default="sccluster",
        metavar="KEY",
        help="obs column of the clusters (default: sccluster)",
    )
    p.add_argument(
        "--key-added",
        default="cell_type",
        metavar="KEY",
        help="key of the results (default: cell_type; an existing obs column of that name is replaced)",
    )
    p.add_argument(
        "--ignore-case", action="store_true", help="match marker genes to the data's gene names ignoring case"
    )
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the background gene sets (default: 0)")
    p.set_defaults(func=_cmd_annotate)


def _read(path: str, groupby: str):
    from . import io
    from ._cli_run import _check_obs_key

    adata = io.read(path)
    _check_obs_key(adata, groupby, "--groupby")
    return adata


def _cmd_markers(args: argparse.Namespace) -> int:
    from ._cli_run import _held_logs
    from ._settings import settings
    from ._utils import atomic_path, check_output_path
    from .tl import markers

    out = None
    if args.output is not None:  # checked before reading the input
        out = check_output_path(args.output, inputs=(args.input,))
        if out.suffix.lower() != ".csv":
            msg = f"output {str(out)!r} must end in .csv"
            raise InputError(msg)
    with _held_logs(settings.verbosity < 3, min_level=logging.WARNING):
        adata = _read(args.input, args.groupby)
        table = markers(
            adata, groupby=args.groupby, n_genes=args.n_genes, method=args.method, random_state=args.seed
        )
    if out is not None:
        with atomic_path(out) as tmp:
            table.to_csv(tmp, index=False)
    counts = adata.obs[args.groupby].astype(str).value_counts()
    groups = list(table["group"].cat.categories)
    width = max(len("group"), *(len(str(g)) for g in groups))
    print(
        f"markers of obs['{args.groupby}'] ({args.method}, each group against the rest), top "
        f"{min(PRINTED_GENES, args.n_genes)} genes:"
    )
    print(f"{'group':<{width}}  {'cells':>7}  genes")
    for g in groups:
        genes = table.loc[table["group"] == g, "gene"].head(PRINTED_GENES)
        print(f"{g:<{width}}  {int(counts.get(g, 0)):>7,}  {' '.join(genes)}")
    if out is not None:
        print(f"output  {out} ({len(table):,} rows)")
    return 0


def _cmd_annotate(args: argparse.Namespace) -> int:
    from . import io
    from ._cli_run import _held_logs
    from ._settings import settings
    from ._utils import check_output_path
    from .tl import annotate
    from .tl._marker_sets import load_markers

    out = check_output_path(args.output, inputs=(args.input,))  # cheap checks before reading the input
    if out.suffix != ".h5ad":
        msg = f"output {str(out)!r} must end in .h5ad"
        raise InputError(msg)
    sets = load_markers(args.markers)  # a bad marker file is an error before the input is read
    if args.key_added == args.groupby:
        msg = f"--key-added and --groupby are both {args.groupby!r}; the names would overwrite the clusters"
        raise InputError(msg)
    with _held_logs(settings.verbosity < 3, min_level=logging.WARNING):
        adata = _read(args.input, args.groupby)
        table = annotate(
            adata,
            args.markers,  # read again there: the same file, its name in messages
            groupby=args.groupby,
            key_added=args.key_added,
            ignore_case=args.ignore_case,
            random_state=args.seed,
        )
        io.write_h5ad(adata, out, inputs=(args.input,))
    _print_table(table)
    named = int((table["cell_type"] != "unassigned").sum())
    details = adata.uns[f"{args.key_added}_details"]
    missing = int(details["sets"]["markers_missing"].map(lambda s: len(s.split(", ")) if s else 0).sum())
    note = (
        f"; {missing} marker genes not in the data (uns['{args.key_added}_details']['sets'])"
        if missing
        else ""
    )
    print(f"named     {named} of {len(table)} clusters of obs['{args.groupby}'] with {sets.source}{note}")
    print(f"output    {out} (names in obs['{args.key_added}'], table in uns['{args.key_added}'])")
    return 0


def _print_table(table) -> None:
    cols = [
        ("cluster", "cluster"),
        ("cells", "n_cells"),
        ("type", "cell_type"),
        ("score", "score"),
        ("p_adj", "pval_adj"),
        ("runner-up", "runner_up"),
    ]
    text = {
        "cluster": table["cluster"].astype(str).tolist(),
        "cells": [f"{n:,}" for n in table["n_cells"]],
        "type": table["cell_type"].astype(str).tolist(),
        "score": [f"{v:.2f}" for v in table["score"]],
        "p_adj": [f"{v:.3g}" for v in table["pval_adj"]],
        "runner-up": table["runner_up"].astype(str).tolist(),
    }
    widths = {h: max(len(h), *(len(v) for v in text[h])) for h, _ in cols}
    right = {"cells", "score", "p_adj"}

    def fmt(h: str, v: str) -> str:
        return f"{v:>{widths[h]}}" if h in right else f"{v:<{widths[h]}}"

    print("  ".join(fmt(h, h) for h, _ in cols).rstrip())
    for i in range(len(table)):
        print("  ".join(fmt(h, text[h][i]) for h, _ in cols).rstrip())
