"""Command-line interface: ``sccluster cluster | demo | evaluate | report | markers | annotate | transfer | datasets``.

The CLI only parses arguments, calls the library and prints results. Bad input raised by the library
as :class:`~sccluster.InputError` becomes one line ``error: <message>`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

# Only light modules here: numpy, torch and the rest load inside main(), where a Ctrl-C is handled.
from . import _signals
from ._cli_params import parse_params, parse_value, positive_int_arg, seed_arg
from ._errors import InputError, TrainingError
from ._version import __version__

__all__ = ["build_parser", "main", "parse_params", "parse_value"]

#: Method of ``sccluster demo`` and ``sccluster cluster`` when ``--method`` is not given
#: (``sccluster.models.DEFAULT_METHOD``, not imported here to keep this module light).
DEMO_METHOD = "siamese"
#: The fair baseline the demo also runs on the same cells, for comparison.
DEMO_COMPARE = "leiden"
#: Output file of ``sccluster demo`` when ``-o`` is not given.
DEMO_OUTPUT = "demo_clustered.h5ad"
#: obs column of the demo holding the reference labels (used only to score the result).
DEMO_LABEL_KEY = "cell_type"


# --------------------------------------------------------------------------- argument parsing
class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line: ``error: ...``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message}; see '{self.prog} --help'\n")
        raise SystemExit(2)


def _n_clusters(text: str) -> int | None:
    if text.strip().lower() in ("auto", "none"):
        return None
    try:
        k = int(text)
    except ValueError:
        msg = f"expected 'auto' or a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if k < 1:
        msg = f"expected 'auto' or a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return k


def _common() -> argparse.ArgumentParser:
    """-q/-v, accepted both before and after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_mutually_exclusive_group()
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print only results and errors (no progress bars or log messages)",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print debug messages, third-party warnings and tracebacks",
    )
    return common


def _add_clustering_options(p: argparse.ArgumentParser, *, default_method: str) -> None:
    from .models import available_methods

    p.add_argument(
        "--method",
        default=default_method,
        help=f"clustering method: {', '.join(available_methods())} (default: {default_method})",
    )
    p.add_argument(
        "--n-clusters",
        type=_n_clusters,
        default=None,
        metavar="auto|K",
        help="number of clusters, or 'auto' to estimate it without labels (default: auto)",
    )
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--n-seeds",
        type=positive_int_arg,
        default=1,
        metavar="N",
        help="fit N seeds (SEED, SEED+1, ...) and keep their consensus, with each cell's agreement "
        "in obs['KEY_agreement'] (default: 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``sccluster`` argument parser."""
    from .models import DEFAULT_METHOD

    common = _common()
    parser = _Parser(
        prog="sccluster",
        parents=[common],
        description="Cluster single-cell RNA-seq raw counts (AnnData in, AnnData out).",
    )
    parser.add_argument("--version", action="version", version=f"sccluster {__version__}")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )

    p = sub.add_parser(
        "cluster",
        parents=[common],
        help="cluster a file of raw counts",
        description="Cluster the cells of IN and write OUT.h5ad with the clusters in "
        "obs[KEY], the embedding in obsm['X_KEY'] and run details in uns[KEY].",
    )
    p.add_argument("input", metavar="IN", help="raw counts: .h5ad, 10x .h5, 10x mtx folder, .loom, .csv/.tsv")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT.h5ad", help="output .h5ad (written atomically)"
    )
    _add_clustering_options(p, default_method=DEFAULT_METHOD)
    p.add_argument(
        "--label-key",
        default=None,
        metavar="KEY",
        help="obs column of reference labels, used only to score the finished result",
    )
    p.add_argument("--labels-csv", default=None, metavar="PATH", help="also write a CSV of cell -> cluster")
    p.add_argument("--layer", default=None, metavar="NAME", help="layer holding the raw counts (default: X)")
    p.add_argument(
        "--transpose",
        action="store_true",
        help="IN is a csv/tsv/txt table of genes x cells (genes in the first column): flip it on reading",
    )
    p.add_argument(
        "--batch-key",
        default=None,
        metavar="KEY",
        help="obs column naming each cell's batch (donor, sample, condition), so that batches do not "
        "become clusters (--method bgformer, siamese or leiden; kmeans has no batch correction)",
    )
    p.add_argument(
        "--n-top-genes",
        type=positive_int_arg,
        default=2000,
        metavar="N",
        help="number of highly variable genes (default: 2000)",
    )
    p.add_argument(
        "--backed",
        action="store_true",
        help="keep the counts of IN (.h5ad or .zarr) on disk and stream them in chunks (out of core): preparation, "
        "training and the output's copy of the counts never load the matrix; the labels are those of an "
        "in-memory run",
    )
    p.add_argument(
        "--results-only",
        action="store_true",
        help="write OUT.h5ad without the count matrices (X, layers): obs, var, obsm and uns only, for inputs "
        "too big to copy",
    )
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        metavar="DIR",
        help="save the training state in DIR every --checkpoint-every steps and at the end of each stage "
        "(--method bgformer or siamese); rerun the same command with --resume to continue a killed run",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int_arg,
        default=500,
        metavar="N",
        help="optimiser steps between checkpoints (default: 500)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoints in --checkpoint-dir (same input, options and seed); the "
        "labels are those of an uninterrupted run",
    )
    p.add_argument(
        "--key-added", default="sccluster", metavar="KEY", help="key of the results (default: sccluster)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="model hyperparameter, repeatable (e.g. --param max_epochs=50)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the expected peak memory and time of the run, and stop"
    )
    p.add_argument(
        "--skip-memory-check",
        action="store_true",
        help="run even when the expected peak memory exceeds the memory available",
    )
    p.set_defaults(func=_cmd_cluster)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="cluster the bundled demo data and score it",
        description="Cluster the bundled demo subset and print cells, clusters found, "
        f"ARI/NMI/ACC against obs['{DEMO_LABEL_KEY}'] and the time taken, beside the same scores "
        f"of {DEMO_COMPARE} (its resolution chosen by subsample stability) on the same cells.",
    )
    p.add_argument(
        "-o",
        "--output",
        default=DEMO_OUTPUT,
        metavar="OUT.h5ad",
        help=f"output .h5ad (default: {DEMO_OUTPUT})",
    )
    _add_clustering_options(p, default_method=DEMO_METHOD)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="score a clustering stored in an .h5ad",
        description="Print ARI, NMI, ACC and the number of clusters of obs[PRED] against obs[TRUTH].",
    )
    p.add_argument("file", metavar="FILE.h5ad", help="AnnData file holding both obs columns")
    p.add_argument("--truth", required=True, metavar="KEY", help="obs column of reference labels")
    p.add_argument(
        "--pred", default="sccluster", metavar="KEY", help="obs column of clusters (default: sccluster)"
    )
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "report",
        parents=[common],
        help="write an HTML report of a clustering",
        description="Write one self-contained HTML file (figures embedded, no JavaScript, "
        "nothing fetched from a network) about the clustering in obs[KEY] of CLUSTERED.h5ad: "
        "run summary and parameters, UMAP, cluster sizes, marker genes, training curves, seed "
        "stability and, with --label-key, agreement with reference labels.",
    )
    p.add_argument(
        "input", metavar="CLUSTERED.h5ad", help="clustered AnnData (e.g. written by 'sccluster cluster')"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="REPORT.html", help="output .html (written atomically)"
    )
    p.add_argument(
        "--label-key",
        default=None,
        metavar="KEY",
        help="obs column of reference labels to score the clustering against",
    )
    p.add_argument(
        "--key", default="sccluster", metavar="KEY", help="key of the clustering (default: sccluster)"
    )
    p.add_argument(
        "--annotation-key",
        default=None,
        metavar="KEY",
        help="uns entry holding a table (e.g. cluster annotations) to show in the report",
    )
    p.set_defaults(func=_cmd_report)

    from ._cli_annotate import add_parsers as add_annotate_parsers

    add_annotate_parsers(sub, common)  # sccluster markers | annotate

    from ._cli_transfer import add_transfer_parser

    add_transfer_parser(
        sub,
        common,
        seed_type=seed_arg,
        param_help="embedding model hyperparameter, repeatable (e.g. --param pretrain_steps=500)",
    )

    p = sub.add_parser(
        "datasets",
        parents=[common],
        help="list the benchmark datasets",
        description="List the benchmark datasets and the folder they are read from.",
    )
    p.set_defaults(func=_cmd_datasets)
    return parser


# --------------------------------------------------------------------------- commands
def _cmd_cluster(args: argparse.Namespace) -> int:
    from ._cli_run import run_cluster

    return run_cluster(
        args.input,
        args.output,
        method=args.method,
        n_clusters=args.n_clusters,
        seed=args.seed,
        label_key=args.label_key,
        labels_csv=args.labels_csv,
        layer=args.layer,
        n_top_genes=args.n_top_genes,
        key_added=args.key_added,
        params=parse_params(args.param),
        n_seeds=args.n_seeds,
        dry_run=args.dry_run,
        memory_check=not args.skip_memory_check,
        batch_key=args.batch_key,
        transpose=args.transpose,
        checkpoint=(args.checkpoint_dir, args.checkpoint_every, args.resume),
        backed=args.backed,
        results_only=args.results_only,
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._cli_run import run_cluster
    from .datasets import demo_path

    return run_cluster(
        demo_path(),
        args.output,
        method=args.method,
        n_clusters=args.n_clusters,
        seed=args.seed,
        label_key=DEMO_LABEL_KEY,
        n_seeds=args.n_seeds,
        compare=DEMO_COMPARE,
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ._cli_run import run_evaluate

    return run_evaluate(args.file, truth=args.truth, pred=args.pred)


def _cmd_report(args: argparse.Namespace) -> int:
    from . import io
    from ._cli_run import _check_obs_key, _held_logs
    from ._settings import settings
    from .pl._report import check_report_path

    out = check_report_path(args.output, inputs=(args.input,))  # before reading the input
    # the reader's messages about X do not matter here: keep only warnings (and print nothing on error)
    with _held_logs(settings.verbosity < 3, min_level=logging.WARNING):
        adata = io.read(args.input)
        _check_obs_key(adata, args.key, "--key")
        if args.label_key is not None:
            _check_obs_key(adata, args.label_key, "--label-key")
        if args.annotation_key is not None and args.annotation_key not in adata.uns:
            keys = ", ".join(map(str, adata.uns)) or "none"
            msg = (
                f"annotation_key {args.annotation_key!r} is not an entry of uns; available uns entries: {keys}; "
                "choose one of them for --annotation-key, or leave the option out"
            )
            raise InputError(msg)
        from .pl import report

        path = report(adata, out, key=args.key, label_key=args.label_key, annotation_key=args.annotation_key)
    print(path)
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from ._cli_run import run_datasets

    return run_datasets()


# --------------------------------------------------------------------------- entry point
def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logging.getLogger(__name__).warning("warning: %s", _one_line(message))


_HANDLER_NAME = "sccluster-cli"


class _StderrHandler(logging.StreamHandler):
    """The command line's log handler: each message as it is, on the current ``sys.stderr``."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _configure_logging() -> None:
    """Print the package's log messages on stderr (once per process: a second call replaces the handler)."""
    logger = logging.getLogger("sccluster")
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)


def _configure_output(verbosity: int) -> None:
    from ._settings import settings

    settings.verbosity = verbosity
    _configure_logging()
    warnings.showwarning = _show_warning
    from .io._text import OrientationWarning

    warnings.simplefilter("ignore", OrientationWarning)  # the reader also logs it: print it once
    if verbosity >= 3:
        return
    if verbosity == 0:
        warnings.simplefilter("ignore")
        return
    for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        warnings.simplefilter("ignore", category)
    warnings.filterwarnings("ignore", module=r"(?!sccluster)")  # third-party warnings of any kind


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sccluster`` command line; return the exit code.

    SIGINT and SIGTERM, at any moment, end in one line ``error: interrupted ...`` and exit code 130 or
    143, with no output file and no temporary file left, unless every output was already complete (then
    one line says so and the exit code is 0).
    """
    with _signals.handle_signals():
        outputs: list[_Output] = []
        finished = False
        try:
            code = _run(argv, outputs)
            finished = True
            return code
        except KeyboardInterrupt as exc:
            _signals.stop_raising()  # a second Ctrl-C must not cut the clean-up short
            return _interrupted(exc, outputs)
        except Exception:
            signum = _signals.received()
            if signum is None:
                raise
            # the signal surfaced as another error: e.g. during an extension module's import, whose
            # initialisation turns the KeyboardInterrupt into an ImportError
            _signals.stop_raising()
            return _interrupted(_signals.Interrupted(signum), outputs)
        finally:
            if "torch.distributed" in sys.modules:  # leave a torchrun process group cleanly
                from . import _distributed

                _distributed.shutdown(wait=finished)


class _Output:
    """An output file of the command, with what was at its path before the command ran."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()
        self.before = self._identity()

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    @property
    def written(self) -> bool:
        """Whether this run put a (complete: renamed into place) file at the path."""
        now = self._identity()
        return now is not None and now != self.before


def _outputs_of(args: argparse.Namespace) -> list[_Output]:
    paths = [getattr(args, name, None) for name in ("output", "labels_csv", "save_model")]
    return [_Output(p) for p in paths if p]


def _interrupted(exc: KeyboardInterrupt, outputs: list[_Output]) -> int:
    signum = getattr(exc, "signum", None) or _signals.received() or signal.SIGINT
    name = signal.Signals(signum).name
    if (
        outputs
    ):  # (none before the arguments are parsed: nothing to import then, the imports may be half done)
        with contextlib.suppress(Exception):
            from ._utils import remove_stale_parts

            for out in (
                outputs
            ):  # temporary files of this run (its process is alive: removed by name), and stale ones
                _remove_own_parts(out.path)
                remove_stale_parts(out.path)
    written = [out for out in outputs if out.written]
    if outputs and len(written) == len(outputs):
        paths = ", ".join(str(out.path) for out in written)
        sys.stderr.write(f"warning: interrupted ({name}) after the output was complete: {paths}\n")
        return 0
    removed = []
    for out in written:  # all or nothing: no partial set of results under a failed exit code
        with contextlib.suppress(OSError):
            out.path.unlink()
            removed.append(str(out.path))
    what = (
        f"removed {', '.join(removed)} so that no partial result remains"
        if removed
        else "no output was written"
    )
    sys.stderr.write(f"error: interrupted ({name}); {what}\n")
    return 128 + int(signum)


def _remove_own_parts(path: Path) -> None:
    from ._utils import temp_parts

    mine = f".{path.name}.{os.getpid()}-"
    for part in temp_parts(path):
        if part.name.startswith(mine):
            with contextlib.suppress(OSError):
                part.unlink()


def _run(argv: Sequence[str] | None, outputs: list[_Output]) -> int:
    parser = build_parser()  # imports the models (seconds): a Ctrl-C here is handled by main
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    verbose = getattr(args, "verbose", False)
    quiet = (
        getattr(args, "quiet", False) or int(os.environ.get("RANK", "0") or 0) > 0
    )  # torchrun: rank 0 speaks
    _configure_output(0 if quiet else 3 if verbose else 2)
    outputs.extend(_outputs_of(args))
    try:
        return args.func(args)
    except InputError as err:
        _signals.stop_raising()
        sys.stderr.write(f"error: {_one_line(err)}\n")
        return 2
    except TrainingError as err:
        _signals.stop_raising()
        sys.stderr.write(f"error: training failed: {_one_line(err)}\n")
        return 1
    except BrokenPipeError:  # output piped into a command that stopped reading (e.g. `| head`)
        with contextlib.suppress(OSError, ValueError):  # silence the flush at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # the CLI turns every failure into one line
        signum = _signals.received()
        if signum is not None:  # a library turned the interrupt into another error: it is still the interrupt
            raise _signals.Interrupted(signum) from err
        _signals.stop_raising()
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else "; rerun with -v for the traceback"
        sys.stderr.write(f"error: internal error ({type(err).__name__}: {_one_line(err)}){hint}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
