"""What the ``sccluster`` subcommands do: validate, call the library, print a summary.

Printing is allowed here (this is the command line), not in the library. Bad input raises
:class:`~sccluster.InputError`; :func:`sccluster.cli.main` turns it into one ``error:`` line.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Literal

from ._cli_params import check_model_params
from ._errors import InputError


def _fmt_obs_keys(adata) -> str:
    cols = [str(c) for c in adata.obs.columns]
    if not cols:
        return "obs has no columns"
    shown = ", ".join(cols[:20]) + (f", ... ({len(cols)} in all)" if len(cols) > 20 else "")
    return f"available obs columns: {shown}"


def _check_obs_key(adata, key: str, option: str) -> None:
    if key not in adata.obs.columns:
        remedy = "; choose one of them" if len(adata.obs.columns) else "; give a file that has one"
        msg = f"{option} {key!r} is not a column of obs; {_fmt_obs_keys(adata)}{remedy}"
        raise InputError(msg)


def check_key_added(key: str, option: str = "--key-added") -> None:
    """Raise :class:`InputError` unless ``key`` can name the results (not empty, no '/')."""
    if not key or not key.strip():
        msg = f"{option} must not be empty; give a name for the results, for example {option} sccluster"
        raise InputError(msg)
    if "/" in key:
        msg = f"{option} {key!r} contains '/', which .h5ad files cannot store in a name; choose a name without '/'"
        raise InputError(msg)


def _scores(adata, truth_key: str, pred_key: str) -> dict[str, Any]:
    from .metrics import evaluate

    truth = adata.obs[truth_key]
    known = truth.notna().to_numpy()
    if not known.any():
        msg = f"obs[{truth_key!r}] has no labels (all missing); choose another label column"
        raise InputError(msg)
    pred = adata.obs[pred_key].to_numpy()[known]
    scores: dict[str, Any] = evaluate(truth.astype(str).to_numpy()[known], pred.astype(str))
    scores["label_key"] = truth_key
    scores["n_scored"] = int(known.sum())
    return scores


def _print_scores(scores: dict[str, Any], n_obs: int, *, note_honest: bool = True) -> None:
    skipped = n_obs - scores["n_scored"]
    note = f"; {skipped:,} cells without a label not scored" if skipped else ""
    honest = "; labels were used only to score the finished result" if note_honest else ""
    print(f"ARI       {scores['ari']:.3f}")
    print(f"NMI       {scores['nmi']:.3f}")
    print(f"ACC       {scores['acc']:.3f}")
    print(f"scored    against obs['{scores['label_key']}'] ({scores['n_classes']} classes{note}){honest}")


def _write_labels_csv(adata, key: str, path: Path) -> None:
    import pandas as pd

    from ._utils import atomic_path

    table = pd.DataFrame({"cell": adata.obs_names, "cluster": adata.obs[key].astype(str).to_numpy()})
    conf = f"{key}_confidence"
    if conf in adata.obs.columns:
        table["confidence"] = adata.obs[conf].to_numpy()
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


class _HoldHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _held_logs(enabled: bool = True, *, min_level: int = logging.NOTSET):
    """Hold the package's log messages until the input is validated, then print them.

    Bad input therefore prints only its ``error:`` line, not the progress messages before it.
    """
    logger = logging.getLogger("sccluster")
    if not enabled:
        yield
        return
    saved, hold = logger.handlers[:], _HoldHandler()
    logger.handlers = [hold]
    try:
        yield
    finally:
        logger.handlers = saved
    for record in hold.records:  # reached only on success: on an error the messages are dropped
        for handler in saved:
            if record.levelno >= max(handler.level, min_level):
                handler.handle(record)


def _checkpoint_params(
    params: dict[str, Any],
    cls: Any,
    method: str,
    checkpoint: tuple[str | None, int, bool],
    seed: int,
    n_seeds: int,
) -> None:
    """Add ``--checkpoint-dir/--checkpoint-every/--resume`` to the model's ``params``, after checking them.

    Without ``--resume`` the runs' checkpoint folders (one per seed) must not hold checkpoints yet.
    """
    folder, every, resume = checkpoint
    if folder is None:
        if resume:
            msg = "--resume needs --checkpoint-dir, the folder of the run to continue"
            raise InputError(msg)
        return
    if "checkpoint_dir" not in cls._param_names():
        from .models import available_methods, get_model_class

        takes = [m for m in available_methods() if "checkpoint_dir" in get_model_class(m)._param_names()]
        msg = f"--method {method} does not train a network, so it has no checkpoints; --checkpoint-dir works with --method {', '.join(takes)}"
        raise InputError(msg)
    if not resume:
        from .models._deep import checkpoint_folder
        from .train import checkpoint_files

        for s in range(seed, seed + n_seeds):
            if checkpoint_files(checkpoint_folder(folder, cls.name, s)):
                msg = f"--checkpoint-dir {folder!r} already holds checkpoints of this method and seed {s}; add --resume to continue that run, or choose another folder"
                raise InputError(msg)
    params.update(checkpoint_dir=str(folder), checkpoint_every=every, resume=resume)


def run_cluster(
    input_path: str | Path,
    output: str | Path,
    *,
    method: str,
    n_clusters: int | None = None,
    seed: int = 0,
    label_key: str | None = None,
    labels_csv: str | Path | None = None,
    layer: str | None = None,
    n_top_genes: int = 2000,
    key_added: str = "sccluster",
    params: dict[str, Any] | None = None,
    n_seeds: int = 1,
    dry_run: bool = False,
    memory_check: bool = True,
    compare: str | None = None,
    batch_key: str | None = None,
    transpose: bool = False,
    checkpoint: tuple[str | None, int, bool] = (None, 500, False),
    backed: bool = False,
    results_only: bool = False,
) -> int:
    """Validate, read, prepare, cluster, score (if ``label_key``), write and print a summary.

    The expected peak memory and time (:func:`sccluster.tl.estimate_resources`) are computed before
    any heavy work (from the file's header when it has one, else right after reading): ``dry_run``
    prints them and stops; otherwise a run expected to exceed the available memory is refused unless
    ``memory_check`` is off. ``compare`` names a second method fitted on the same prepared cells
    (same seed and k), whose scores and time are printed beside the first's (the demo's fair baseline).
    ``batch_key`` names the obs column of batches (:func:`sccluster.tl.cluster`); the method is checked
    to take it before the file is read, and the column right after reading, before any preparation.
    ``transpose`` reads a csv/tsv/txt table of genes x cells (:func:`sccluster.io.read`). ``backed`` keeps the
    counts of an ``.h5ad`` on disk (:func:`sccluster.pp.prepare` and the fit stream them; the memory check, which
    assumes the counts in memory, is skipped); ``results_only`` writes the output without count matrices.
    ``checkpoint`` is ``(folder, steps between saves, resume)`` for the deep models' training state
    (checked before the file is read).
    """
    from . import io, pp, tl
    from ._settings import settings
    from ._utils import check_output_path
    from .models import get_model_class

    start = time.perf_counter()
    params = dict(params or {})
    # cheap checks first, before any file is read: names, method, hyperparameters, output paths
    check_key_added(key_added)
    cls = get_model_class(method)
    valid = set(cls._param_names())
    _checkpoint_params(params, cls, method, checkpoint, seed, n_seeds)
    check_model_params(cls, method, params, fixed={"n_clusters": n_clusters, "random_state": seed,
                                                   "n_top_genes": n_top_genes, "batch_key": batch_key})  # fmt: skip
    if "n_top_genes" in valid:  # the model selects its genes as prepare did
        params["n_top_genes"] = n_top_genes
    out = check_output_path(output, inputs=(input_path,))
    if out.suffix != ".h5ad":
        msg = f"output {str(out)!r} must end in .h5ad; use --labels-csv for a CSV of clusters"
        raise InputError(msg)
    if label_key is not None and label_key == key_added:
        msg = f"--label-key and --key-added are both {key_added!r}; the clusters would overwrite the labels, choose another --key-added"
        raise InputError(msg)
    if batch_key is not None:
        if "batch_key" not in valid:
            from .models import available_methods

            takes = [m for m in available_methods() if "batch_key" in get_model_class(m)._param_names()]
            msg = (
                f"--method {method} does not take --batch-key (it has no batch correction); --batch-key works "
                f"with --method {', '.join(takes)}"
            )
            raise InputError(msg)
        if batch_key == key_added:
            msg = (
                f"--batch-key and --key-added are both {batch_key!r}; the clusters would overwrite the batches, "
                "choose another --key-added"
            )
            raise InputError(msg)
    from .tl._cluster import MAX_SEEDS

    if n_seeds > MAX_SEEDS:
        msg = f"--n-seeds {n_seeds} is more than {MAX_SEEDS}; ask for fewer seeds"
        raise InputError(msg)
    csv = None
    if labels_csv is not None:
        csv = check_output_path(labels_csv, inputs=(input_path, out))

    from .tl._resources import _file_shape, check_memory, estimate_for_shape

    shape = _file_shape(Path(input_path))
    if backed and Path(input_path).suffix.lower() not in (".h5ad", ".zarr"):
        msg = (
            f"--backed reads .h5ad files and .zarr stores only, not {Path(input_path).name!r}; convert it to .h5ad or "
            "leave out --backed"
        )
        raise InputError(msg)
    memory_check = memory_check and not backed
    if shape is not None and (dry_run or memory_check):
        estimate = estimate_for_shape(shape, method, n_seeds=n_seeds)
        if dry_run:
            print(f"estimate  {estimate}")
            return 0
        if memory_check:
            check_memory(estimate)
    with _held_logs(settings.verbosity < 3):
        adata = io.read(input_path, layer=layer, transpose=transpose or None, backed="r" if backed else None)
        if shape is None and (dry_run or memory_check):
            from .tl._resources import data_shape

            estimate = estimate_for_shape(data_shape(adata), method, n_seeds=n_seeds)
            if dry_run:
                print(f"estimate  {estimate}")
                return 0
            if memory_check:
                check_memory(estimate)
        if adata.n_obs == 0 or adata.n_vars == 0:
            msg = f"{str(input_path)!r} holds an empty matrix ({adata.n_obs} cells x {adata.n_vars} genes); give a file with data"
            raise InputError(msg)
        if label_key is not None:
            _check_obs_key(adata, label_key, "--label-key")
        if batch_key is not None:
            from .data import read_batches

            _check_obs_key(adata, batch_key, "--batch-key")
            read_batches(
                adata, batch_key, warn=False
            )  # missing values, one-cell batches: an error before any work
        if n_clusters is not None and n_clusters > adata.n_obs:
            msg = (
                f"--n-clusters {n_clusters} is more than the {adata.n_obs:,} cells in the data; ask for at most "
                f"{adata.n_obs:,} clusters"
            )
            raise InputError(msg)
        n_obs, n_vars = adata.n_obs, adata.n_vars
        pp.prepare(adata, layer=layer, n_top_genes=n_top_genes, random_state=seed)  # validates the counts
        if n_clusters is not None and n_clusters > adata.n_obs:
            msg = (
                f"--n-clusters {n_clusters} is more than the {adata.n_obs:,} cells left after quality control "
                f"({n_obs - adata.n_obs:,} of {n_obs:,} cells have no counts); ask for at most {adata.n_obs:,} clusters"
            )
            raise InputError(msg)
    tl.cluster(adata, method=method, n_clusters=n_clusters, key_added=key_added, random_state=seed,
               n_seeds=n_seeds, batch_key=batch_key, **params)  # fmt: skip
    from . import _distributed

    if not _distributed.current().is_main:  # a data-parallel run (torchrun): rank 0 writes and reports
        return 0
    info = adata.uns[key_added]
    scores = _scores(adata, label_key, key_added) if label_key is not None else None
    if scores is not None:
        info["scores"] = scores
    other = None
    if compare is not None and compare != method:
        other = _fit_and_score(adata, compare, n_clusters, seed, label_key)
    # the writes come last: once they are done, the run's results are complete
    io.write_h5ad(adata, out, inputs=(input_path,), results_only=results_only)
    if csv is not None:
        _write_labels_csv(adata, key_added, csv)

    requested = "auto" if n_clusters is None else f"{n_clusters} requested"
    print(f"input     {input_path}")
    kept = "" if adata.shape == (n_obs, n_vars) else f" ({adata.n_obs:,} x {adata.n_vars:,} kept after QC)"
    print(f"cells     {n_obs:,} cells x {n_vars:,} genes{kept}")
    print(f"method    {method} (seed {seed})")
    print(f"clusters  {info['n_clusters']} found ({requested})")
    if "stability" in info:
        st = info["stability"]
        print(
            f"seeds     {st['n_seeds']} (consensus; mean ARI between seeds {st['mean_pairwise_ari']:.3f}, "
            f"cells agreeing with every seed {float((adata.obs[f'{key_added}_agreement'] == 1).mean()):.1%})"
        )
    if "batch_key" in info:
        print(
            f"batches   {info['n_batches']} in obs['{info['batch_key']}']; {info['n_single_batch_clusters']} of "
            f"{info['n_clusters']} clusters have > 90 % of their cells from one batch"
        )
    if scores is not None:
        _print_scores(scores, adata.n_obs)
    total = time.perf_counter() - start
    print(f"time      {info.get('time_s', float('nan')):.1f} s clustering, {total:.1f} s in all")
    if other is not None:
        assert compare is not None  # other is fitted only for compare
        print(f"compare   {_comparison_line(compare, other)}")
    print(f"output    {out} (clusters in obs['{key_added}'])" + (f", {csv}" if csv is not None else ""))
    return 0


def _fit_and_score(
    adata, method: str, n_clusters: int | None, seed: int, label_key: str | None
) -> dict[str, Any]:
    """Fit ``method`` on the prepared ``adata`` (nothing is written to it); its k, time and scores."""
    import numpy as np

    from .metrics import evaluate
    from .models import get_model_class

    model = get_model_class(method)(n_clusters=n_clusters, random_state=seed).fit(adata)
    out: dict[str, Any] = {"k": int(model.n_clusters_), "time_s": model.fit_time_}
    if label_key is not None:
        truth = adata.obs[label_key]
        known = truth.notna().to_numpy()
        out.update(evaluate(truth.astype(str).to_numpy()[known], np.asarray(model.labels_)[known]))
    return out


def _comparison_line(method: str, result: dict[str, Any]) -> str:
    scores = f"ARI {result['ari']:.3f}, NMI {result['nmi']:.3f}, " if "ari" in result else ""
    name = f"{method} (resolution chosen by stability)" if method == "leiden" else method
    return f"{name} on the same cells: {scores}{result['k']} clusters, {result['time_s']:.1f} s"


def run_evaluate(path: str | Path, *, truth: str, pred: str) -> int:
    """Print ARI, NMI, ACC and k found / true k of ``obs[pred]`` against ``obs[truth]``."""
    from . import io
    from ._settings import settings

    backed: Literal["r"] | None = "r" if Path(path).suffix == ".h5ad" else None  # only obs is needed
    # the reader's messages about X do not matter here: keep only its warnings
    with _held_logs(settings.verbosity < 3, min_level=logging.WARNING):
        adata = io.read(path, backed=backed)
        try:
            _check_obs_key(adata, truth, "--truth")
            _check_obs_key(adata, pred, "--pred")
            scores = _scores(adata, truth, pred)
        finally:
            if adata.isbacked:
                adata.file.close()
    print(f"file      {path} ({adata.n_obs:,} cells)")
    print(f"clusters  {scores['n_clusters']} found in obs['{pred}'] / {scores['n_classes']} true")
    _print_scores(scores, adata.n_obs, note_honest=False)
    return 0


def run_datasets() -> int:
    """List the benchmark datasets and where they are read from."""
    from . import datasets
    from ._settings import settings

    folder = Path(settings.datasetdir)
    names = datasets.list_datasets()
    print(f"benchmark datasets, read from {folder} (set SCCLUSTER_DATASETDIR to change):")
    width = max((len(n) for n in names), default=0)
    for name in names:
        print(f"  {name:<{width}}  {folder / (name + '.h5ad')}")
    if not names:
        print("  none found there")
    print(f"bundled demo: {datasets.demo_path()}")
    return 0
