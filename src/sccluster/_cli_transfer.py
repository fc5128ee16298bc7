"""``sccluster transfer``: name the cells of a query file with the cell types of a labelled reference file."""

from __future__ import annotations

import argparse
import time

from ._errors import InputError


def add_transfer_parser(sub, common: argparse.ArgumentParser, *, seed_type, param_help: str) -> None:
    """Register ``sccluster transfer`` on the subcommand parsers ``sub``."""
    from .tl import transfer_methods

    p = sub.add_parser(
        "transfer", parents=[common], help="label the cells of a query file from a labelled reference file",
        description="Fit a model on REF.h5ad (raw counts and cell types in obs[--label-key]), classify the cells "
        "of QUERY.h5ad and write OUT.h5ad with the types in obs[KEY] ('unknown' for cells that fit no reference "
        "type), the confidence in obs[KEY_confidence], the novelty score in obs[KEY_novelty] and the "
        "probabilities in obsm[KEY_proba]. With --model, classify QUERY with a saved transfer model instead "
        "(one positional file). The query's own labels, if any, are never read.",
    )  # fmt: skip
    p.add_argument(
        "files", nargs="+", metavar="REF QUERY", help="reference and query files (only QUERY with --model)"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT.h5ad", help="output .h5ad (written atomically)"
    )
    p.add_argument(
        "--label-key", default=None, metavar="KEY", help="obs column of the reference's cell types"
    )
    p.add_argument(
        "--method", default="bgformer", help=f"embedding: {', '.join(transfer_methods())} (default: bgformer)"
    )
    p.add_argument(
        "--batch-key",
        default=None,
        metavar="KEY",
        help="obs column of batches (donors, samples) in both files; a query batch not in the "
        "reference is scaled with its own gene statistics",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        default=0.5,
        metavar="P",
        help="cells whose best type has a lower calibrated probability are 'unknown' (default: 0.5)",
    )
    p.add_argument(
        "--novelty-alpha",
        type=float,
        default=0.01,
        metavar="A",
        help="share of held-out reference cells beyond the novelty threshold (default: 0.01)",
    )
    p.add_argument(
        "--features",
        default="embedding",
        choices=["embedding", "embedding+genes"],
        help="what the classifier reads: the embedding alone, or beside the model's scaled input genes "
        "(default: embedding)",
    )
    p.add_argument("--seed", type=seed_type, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--key-added",
        default="transferred_label",
        metavar="KEY",
        help="key of the results (default: transferred_label)",
    )
    p.add_argument(
        "--save-model", default=None, metavar="MODEL.pt", help="also save the fitted transfer model"
    )
    p.add_argument(
        "--model", default=None, metavar="MODEL.pt", help="classify QUERY with this saved transfer model"
    )
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help=param_help)
    p.add_argument(
        "--transpose",
        action="store_true",
        help="the csv/tsv/txt tables among the files are genes x cells (genes in the first column): flip "
        "them on reading",
    )
    p.set_defaults(func=run_transfer)


def _transposed_tables(paths, transpose: bool) -> dict:
    """``transpose=`` of :func:`sccluster.io.read` per file: ``--transpose`` flips the text tables among them."""
    from pathlib import Path

    from .io._formats import detect_format

    def is_table(path) -> bool:
        try:
            return detect_format(Path(path)) in ("csv", "tsv", "txt")
        except InputError:
            return False  # io.read says what is wrong with it

    flip = {p: (True if transpose and is_table(p) else None) for p in paths if p is not None}
    if transpose and not any(flip.values()):
        msg = "--transpose is only for csv/tsv/txt tables, and no input file is one; leave out --transpose"
        raise InputError(msg)
    return flip


def _check_transfer_params(method: str, params: dict) -> None:
    """``--param`` of the embedding model, checked before any file is read (names, types, ranges)."""
    from ._cli_params import check_model_params, unknown_param_error
    from .models import get_model_class
    from .models._pca_embedder import PCAEmbedder
    from .tl import transfer_methods

    if method not in transfer_methods():
        msg = f"--method {method} cannot transfer labels; choose one of {', '.join(transfer_methods())}"
        raise InputError(msg)
    if method == PCAEmbedder.name:
        unknown = sorted(set(params) - {"n_pcs", "n_top_genes"})
        if unknown:
            raise unknown_param_error(unknown, ["n_pcs", "n_top_genes"], method)
        check_model_params(PCAEmbedder, method, params)
        return
    check_model_params(get_model_class(method), method, params)


def run_transfer(args: argparse.Namespace) -> int:
    """Validate, read, fit (or load), classify, write and print a summary."""
    from . import io
    from ._cli_params import parse_params
    from ._settings import settings
    from ._utils import check_output_path
    from .tl import LabelTransfer
    from .tl._transfer import write_transfer

    start = time.perf_counter()
    if args.model is not None:
        if len(args.files) != 1:
            msg = f"with --model give one QUERY file, got {len(args.files)} files"
            raise InputError(msg)
        ref_path, query_path = None, args.files[0]
    else:
        if len(args.files) != 2:
            msg = f"give a reference and a query file (REF QUERY), got {len(args.files)} file(s); or use --model MODEL.pt QUERY"
            raise InputError(msg)
        if args.label_key is None:
            msg = "--label-key is required: name the obs column of the reference's cell types"
            raise InputError(msg)
        ref_path, query_path = args.files
    inputs = tuple(p for p in (ref_path, query_path, args.model) if p is not None)
    out = check_output_path(args.output, inputs=inputs)
    if out.suffix != ".h5ad":
        msg = f"output {str(out)!r} must end in .h5ad; choose a file name like labelled.h5ad"
        raise InputError(msg)
    save = None
    if args.save_model is not None:
        save = check_output_path(args.save_model, inputs=(*inputs, out))
        if save.exists():
            msg = f"--save-model {str(save)!r} already exists; remove it or choose another path"
            raise InputError(msg)
    key = args.key_added
    from ._cli_run import _check_obs_key, _held_logs, check_key_added

    check_key_added(key)
    if args.model is None:
        params = parse_params(args.param, reserved={"random_state": "--seed", "batch_key": "--batch-key"})
        _check_transfer_params(args.method, params)
        transfer = LabelTransfer(args.label_key, method=args.method, batch_key=args.batch_key,
                                 min_confidence=args.min_confidence, novelty_alpha=args.novelty_alpha,
                                 features=args.features,
                                 random_state=args.seed, **params)  # fmt: skip
    elif args.param:
        msg = (
            "--param sets the hyperparameters of a new model, not of a saved one (--model); leave --param out"
        )
        raise InputError(msg)
    flip = _transposed_tables((ref_path, query_path), args.transpose)
    with _held_logs(settings.verbosity < 3):
        if args.model is not None:
            transfer = LabelTransfer.load(args.model)
            query = io.read(query_path, transpose=flip[query_path])
            n_ref = transfer.n_reference_
            result = transfer.predict(query)
        else:
            assert ref_path is not None  # REF QUERY are given when there is no --model
            reference = io.read(ref_path, transpose=flip[ref_path])
            query = io.read(query_path, transpose=flip[query_path])
            _check_obs_key(reference, args.label_key, "--label-key")
            n_ref = reference.n_obs
            result = transfer.fit_predict(reference, query)
    write_transfer(query, result, transfer, key)
    io.write_h5ad(query, out, inputs=inputs)
    if save is not None:
        transfer.save(save)

    import numpy as np
    import pandas as pd

    print(f"reference {ref_path or args.model} ({n_ref:,} labelled cells, {len(transfer.classes_)} types)")
    print(f"query     {query_path} ({query.n_obs:,} cells)")
    print(f"method    {transfer.method} (seed {transfer.seed_})")
    table = pd.DataFrame({"label": result.labels.astype(str), "confidence": result.confidence})
    summary = (
        table.groupby("label", sort=False)["confidence"]
        .agg(["size", "mean"])
        .sort_values("size", ascending=False)
    )
    width = max(len(str(t)) for t in summary.index)
    print(f"labels    {'type':<{width}}  cells  mean confidence")
    for label, row in summary.iterrows():
        print(f"          {label:<{width}}  {int(row['size']):>5}  {row['mean']:.2f}")
    n_unknown = int(np.sum(result.unknown))
    print(f"unknown   {n_unknown:,} cells ({n_unknown / max(query.n_obs, 1):.1%}): novelty above 1 or confidence "
          f"below {transfer.min_confidence:.2f}")  # fmt: skip
    print(f"time      {time.perf_counter() - start:.1f} s")
    print(f"output    {out} (labels in obs['{key}'])" + (f", model {save}" if save is not None else ""))
    return 0
