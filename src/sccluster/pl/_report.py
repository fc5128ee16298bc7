"""``pl.report``: one self-contained HTML file summarising a clustering (figures embedded, no JavaScript)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from sccluster._errors import InputError
from sccluster._utils import atomic_path, check_output_path
from sccluster._version import __version__
from sccluster.metrics import evaluate

from . import _html as h
from ._common import cluster_labels, label_column, png_bytes, run_info
from ._contingency import contingency, labelled_pairs
from ._embedding import embedding
from ._markers import markers
from ._sizes import cluster_sizes
from ._stability import stability
from ._training import training

logger = logging.getLogger(__name__)

#: Section headings of the report, by anchor, in order (each section appears only when its data exist).
SECTIONS = {
    "summary": "Run summary",
    "umap": "UMAP",
    "sizes": "Cluster sizes",
    "markers": "Marker genes",
    "annotation": "Annotation",
    "labels": "Agreement with labels",
    "training": "Training curves",
    "stability": "Seed stability",
}
#: Rows of the annotation table shown at most.
MAX_TABLE_ROWS = 1000
#: Resolution of the embedded figures (dots per inch).
REPORT_DPI = 90


def check_report_path(path, *, inputs: tuple = ()) -> Path:
    """Check that ``path`` is a writable ``.html`` / ``.htm`` file path (not an input, not a folder)."""
    if not isinstance(path, (str, Path)) or not str(path):
        msg = f"path must be a file path ending in .html, got {path!r}"
        raise InputError(msg)
    out = check_output_path(path, inputs=inputs)
    if out.suffix.lower() not in (".html", ".htm"):
        msg = f"report path {str(out)!r} must end in .html; choose a file name like report.html"
        raise InputError(msg)
    return out


def annotation_table(adata, annotation_key: str) -> pd.DataFrame:
    """``uns[annotation_key]`` as a DataFrame: a DataFrame, or a dict of equal-length 1-d columns."""
    if not isinstance(annotation_key, str) or annotation_key not in adata.uns:
        keys = ", ".join(map(str, list(adata.uns.keys())[:20])) or "none"
        msg = f"annotation_key {annotation_key!r} is not an entry of uns; available uns entries: {keys}"
        raise InputError(msg)
    value = adata.uns[annotation_key]
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, Mapping) and value:
        cols = {str(k): np.asarray(v) for k, v in value.items()}
        lengths = {c.shape[0] if c.ndim == 1 else -1 for c in cols.values()}
        if len(lengths) == 1 and -1 not in lengths:
            return pd.DataFrame(cols)
    msg = (
        f"uns[{annotation_key!r}] is not a table; store a pandas DataFrame or a dict of equal-length columns "
        "(e.g. {'cluster': [...], 'cell_type': [...]})"
    )
    raise InputError(msg)


#: Columns of a :func:`sccluster.tl.annotate` table shown in the report (the full table stays in ``uns``).
ANNOTATE_COLUMNS = [
    "cluster",
    "n_cells",
    "cell_type",
    "score",
    "z",
    "pval_adj",
    "runner_up",
    "margin",
    "markers_found",
    "markers_missing",
]


def find_annotation(adata, key: str) -> str | None:
    """The uns key of the latest :func:`sccluster.tl.annotate` table of the clusters in ``obs[key]``, if any.

    An annotation is recognised by its ``uns[<name>_details]["params"]["groupby"] == key`` beside a table in
    ``uns[<name>]``; with several, the one whose name comes first alphabetically.
    """
    found = []
    for name in adata.uns:
        if not (isinstance(name, str) and name.endswith("_details")) or name == "_details":
            continue
        details, base = adata.uns[name], name[: -len("_details")]
        params = details.get("params") if isinstance(details, Mapping) else None
        table = adata.uns.get(base)
        if isinstance(params, Mapping) and params.get("groupby") == key and isinstance(table, pd.DataFrame):
            found.append(base)
    return sorted(found)[0] if found else None


def _figure(draw: Callable, alt: str, caption: str | None = None) -> str:
    """The figure ``draw()`` returns, as an embedded PNG; a note instead when its data do not allow it."""
    try:
        fig = draw()
    except InputError as err:
        logger.warning("report: %s not drawn: %s", alt, err)
        return h.note(f"Not shown: {err}")
    return h.image(png_bytes(fig, dpi=REPORT_DPI), alt, caption)


def _summary(adata, key: str, info: dict, labels) -> str:
    requested = info.get("n_clusters_requested")
    rows = [
        ("method", info.get("method", "unknown")),
        ("clusters found", info.get("n_clusters", len(labels.categories))),
        ("clusters requested", "auto" if requested is None else requested),
    ]
    if "resolution" in info:
        rows.append(("Leiden resolution", info["resolution"]))
    time_s = f"{float(info['time_s']):.1f} s" if "time_s" in info else None
    version = f"sccluster {info['sccluster_version']}" if "sccluster_version" in info else None
    rows += [
        ("seed", info.get("seed")),
        ("clustering time", time_s),
        ("cells", int(adata.n_obs)),
        ("genes", int(adata.n_vars)),
        ("clusters in", f"obs['{key}']"),
        ("clustered with", version),
    ]
    body = "<div><h3>Run</h3>" + h.key_value_table([(k, v) for k, v in rows if v is not None]) + "</div>"
    params = info.get("params")
    if isinstance(params, Mapping) and params:
        table = h.table(("parameter", "value"), [(str(k), v) for k, v in params.items()])
        body += f"<div><h3>Parameters</h3>{table}</div>"
    return f'<div class="cols">{body}</div>'


def _annotation(table: pd.DataFrame) -> str:
    if set(ANNOTATE_COLUMNS) <= set(table.columns):  # a tl.annotate table: its main columns, numbers rounded
        table = (
            table[ANNOTATE_COLUMNS]
            .round({"score": 3, "z": 2, "margin": 3})
            .assign(pval_adj=table["pval_adj"].map(lambda v: f"{v:.3g}"))
        )
    shown = table.iloc[:MAX_TABLE_ROWS]
    index = not isinstance(shown.index, pd.RangeIndex)
    header = ([shown.index.name or ""] if index else []) + [str(c) for c in shown.columns]
    records = zip(shown.index, shown.itertuples(index=False), strict=True)
    rows = [([i] if index else []) + list(r) for i, r in records]
    more = ""
    if len(table) > MAX_TABLE_ROWS:
        more = h.note(f"First {MAX_TABLE_ROWS:,} of {len(table):,} rows shown.")
    return h.table(header, rows) + more


def _labels(adata, key: str, label_key: str) -> str:
    clusters, labels, n_left_out = labelled_pairs(adata, label_key, key)
    scores = evaluate(np.asarray(labels).astype(str), np.asarray(clusters).astype(str))
    scored = f"{len(labels):,}" + (f" ({n_left_out:,} without a label left out)" if n_left_out else "")
    body = h.key_value_table(
        [
            ("ARI", round(scores["ari"], 4)),
            ("NMI", round(scores["nmi"], 4)),
            ("ACC (Hungarian)", round(scores["acc"], 4)),
            ("clusters / classes", f"{scores['n_clusters']} / {scores['n_classes']}"),
            ("cells scored", scored),
        ]
    )
    body += h.note(f"Reference labels from obs['{label_key}'], used only to score the finished clustering.")
    return body + _figure(
        lambda: contingency(adata, label_key, key=key),
        "cluster x label contingency table",
        "Fraction of each cluster's cells per label; clusters matched one-to-one to labels "
        "(Hungarian matching) on the framed diagonal.",
    )


def report(
    adata,
    path: str | Path,
    *,
    key: str = "sccluster",
    label_key: str | None = None,
    annotation_key: str | None = None,
    title: str | None = None,
) -> Path:
    """Write one self-contained HTML report of the clustering in ``obs[key]``.

    Figures are PNG images embedded as base64 data URIs, styles are inline, there is no JavaScript
    and nothing is fetched from a network: the file can be mailed or archived as it is. All text is
    HTML-escaped. Sections appear only when their data exist: run summary and parameters
    (``uns[key]``), UMAP (:func:`embedding`), cluster sizes, marker genes (:func:`markers`, when
    ``X`` has genes), the annotation table (``annotation_key``), agreement with reference labels
    (``label_key``: ARI/NMI/ACC recomputed with :func:`sccluster.metrics.evaluate` and the
    :func:`contingency` heatmap), training curves (``uns[key]["history"]``) and seed stability
    (``uns[key]["stability"]``). A figure its data do not allow is replaced by a one-line note.
    ``adata`` is not changed.

    Parameters
    ----------
    adata
        Clustered AnnData (``obs[key]``; ideally the output of :func:`sccluster.tl.cluster`).
    path
        Output ``.html`` file, written atomically (its folder must exist).
    key
        Key of the clustering (default ``"sccluster"``).
    label_key
        obs column of reference labels to score the clustering against (default: none).
    annotation_key
        uns entry holding a table (pandas DataFrame or dict of equal-length columns), e.g. cluster
        annotations, shown as a table. Default: the table :func:`sccluster.tl.annotate` wrote for the
        clusters in ``obs[key]`` when there is one (:func:`find_annotation`), else none. The cells' names
        in ``obs[annotation_key]``, when present, also colour the UMAP.
    title
        Title of the report (default ``"sccluster report: <method>, <n> cells"``).

    Returns
    -------
    The path written.
    """
    labels = cluster_labels(adata, key)  # cheap checks first
    out = check_report_path(path)
    if label_key is not None:
        label_column(adata, label_key)
    if annotation_key is None:  # the tl.annotate table of these clusters, when there is one
        annotation_key = find_annotation(adata, key)
    annotation = annotation_table(adata, annotation_key) if annotation_key is not None else None
    if title is not None and not isinstance(title, str):
        msg = f"title must be a string or None, got {title!r}"
        raise InputError(msg)
    info = run_info(adata, key)
    method = info.get("method", key)
    title = title or f"sccluster report: {method}, {adata.n_obs:,} cells"

    sections = [("summary", SECTIONS["summary"], _summary(adata, key, info, labels))]
    if "X_umap" in adata.obsm or f"X_{key}" in adata.obsm:
        color = [label_key] if label_key is not None and label_key != key else []
        named = annotation_key is not None and annotation_key in adata.obs.columns
        if named and annotation_key not in (key, label_key):
            assert annotation_key is not None  # implied by named
            color.append(annotation_key)  # the cell types tl.annotate named
        if info.get("stability") is not None and f"{key}_agreement" in adata.obs.columns:
            color.append(f"{key}_agreement")  # each cell's agreement across seeds
        sections.append(
            (
                "umap",
                SECTIONS["umap"],
                _figure(lambda: embedding(adata, key=key, color=color), "UMAP coloured by cluster"),
            )
        )
    sizes = _figure(lambda: cluster_sizes(adata, key=key), "cluster sizes")
    sections.append(("sizes", SECTIONS["sizes"], sizes))
    if adata.X is not None and adata.n_vars > 0:
        sections.append(
            (
                "markers",
                SECTIONS["markers"],
                _figure(
                    lambda: markers(adata, key=key),
                    "marker gene dot plot",
                    "Top 3 marker genes per cluster (wilcoxon test on log-normalised expression, each cluster "
                    "against the rest, at most 500 cells per cluster); dot size: fraction of cells expressing the "
                    "gene, colour: mean expression.",
                ),
            )
        )
    if annotation is not None:
        note = f"Table uns['{annotation_key}']."
        if set(ANNOTATE_COLUMNS) <= set(annotation.columns):
            note = (
                f"Cluster names from marker gene sets (scc.tl.annotate; table uns['{annotation_key}'], every "
                f"cluster x set test in uns['{annotation_key}_details']): score = mean standardised expression "
                "of the set's genes above expression-matched random genes; p_adj: empirical, Benjamini-Hochberg."
            )
        sections.append(("annotation", SECTIONS["annotation"], h.note(note) + _annotation(annotation)))
    if label_key is not None:
        sections.append(("labels", SECTIONS["labels"], _labels(adata, key, label_key)))
    if isinstance(info.get("history"), Mapping) and info["history"]:
        sections.append(
            ("training", SECTIONS["training"], _figure(lambda: training(adata, key=key), "training curves"))
        )
    if info.get("stability") is not None:
        sections.append(
            (
                "stability",
                SECTIONS["stability"],
                _figure(lambda: stability(adata, key=key), "per-cluster agreement across seeds"),
            )
        )

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"{adata.n_obs:,} cells x {adata.n_vars:,} genes; report by sccluster {__version__}, {stamp}"
    document = h.page(title, subtitle, sections)
    with atomic_path(out) as tmp:
        tmp.write_text(document, encoding="utf-8")
    logger.info("report: wrote %s (%d sections, %.1f MB)", out, len(sections), len(document) / 1e6)
    return out
