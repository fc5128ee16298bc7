"""Marker sets for :func:`sccluster.tl.annotate`: the shipped sets and readers of dict, CSV, GMT and JSON.

A marker set maps each cell type to its marker genes. Sets are inputs written by people (from the
literature or the user's knowledge); they are never derived from a dataset's labels. The shipped sets
live in ``tl/_data/markers/<name>.json`` inside the package (no download, ever), each with its
references in the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sccluster._errors import InputError

#: Folder of the shipped marker sets (one JSON file per set).
MARKER_DIR = Path(__file__).parent / "_data" / "markers"
#: Label of clusters that no marker set fits.
UNASSIGNED = "unassigned"
#: File suffixes read as CSV (comma), TSV (tab), GMT and JSON.
_CSV, _TSV, _GMT, _JSON = (".csv",), (".tsv", ".txt"), (".gmt",), (".json",)


@dataclass
class MarkerSets:
    """Cell type -> marker genes (order kept, duplicates dropped), and where they came from."""

    sets: dict[str, list[str]]
    source: str
    references: list[str] = field(default_factory=list)


def shipped_names() -> list[str]:
    """Names of the marker sets shipped with the package, sorted."""
    return sorted(p.stem for p in MARKER_DIR.glob("*.json"))


def marker_sets() -> pd.DataFrame:
    """The marker sets shipped with sccluster, one row per set.

    Each set is a JSON file inside the package written from the literature (its references are in the
    file and in this table); pass its ``name`` to :func:`sccluster.tl.annotate` (or ``--markers`` of
    ``sccluster annotate``). Nothing is downloaded.

    Returns
    -------
    DataFrame with columns ``name``, ``species``, ``tissue``, ``n_types``, ``cell_types`` (joined by
    ``"; "``), ``n_genes`` (distinct markers), ``references`` (joined by ``" | "``) and ``path``.
    """
    rows = []
    for name in shipped_names():
        path = MARKER_DIR / f"{name}.json"
        doc = json.loads(path.read_text(encoding="utf-8"))
        sets = _from_json(doc, str(path))
        rows.append({
            "name": name,
            "species": doc.get("species", ""),
            "tissue": doc.get("tissue", ""),
            "n_types": len(sets),
            "cell_types": "; ".join(sets),
            "n_genes": len({g for genes in sets.values() for g in genes}),
            "references": " | ".join(doc.get("references", [])),
            "path": str(path),
        })  # fmt: skip
    return pd.DataFrame(rows)


def read_markers(markers) -> dict[str, list[str]]:
    """Read marker sets: a dict, a shipped set's name, or a CSV / TSV / GMT / JSON file.

    Parameters
    ----------
    markers
        - a dict ``{cell type: [genes]}`` (a single gene may be a string);
        - the name of a shipped set (see :func:`marker_sets`), e.g. ``"human_pbmc"``;
        - a path to ``.csv`` (rows ``cell_type,gene``; a header row naming the columns ``cell_type`` and
          ``gene`` is optional), ``.tsv`` / ``.txt`` (the same with tabs), ``.gmt`` (one set per line:
          name, description, genes, tab-separated) or ``.json`` (``{cell type: [genes]}``, or an object
          whose ``"cell_types"`` maps each type to a gene list or to ``{"markers": [genes]}``).
          Lines starting with ``#`` are comments in CSV, TSV and GMT files.

    Returns
    -------
    ``{cell type: [genes]}``, types in file order, each gene once (first occurrence kept).
    """
    return load_markers(markers).sets


def load_markers(markers) -> MarkerSets:
    """:func:`read_markers` with the source's name (for messages) and the references of a shipped set."""
    if isinstance(markers, Mapping):
        return MarkerSets(_clean(markers, "the markers dict"), "the markers dict")
    if not isinstance(markers, (str, Path)) or not str(markers):
        msg = (
            f"markers must be a dict {{cell type: [genes]}}, a file path (.csv, .tsv, .gmt, .json) or a shipped "
            f"set name ({', '.join(shipped_names())}), got {type(markers).__name__}"
        )
        raise InputError(msg)
    path = Path(markers).expanduser()
    if isinstance(markers, str) and markers in shipped_names() and not path.exists():
        path = MARKER_DIR / f"{markers}.json"
        doc = _read_json(path)
        return MarkerSets(
            _from_json(doc, markers), f"shipped set {markers!r}", list(doc.get("references", []))
        )
    if not path.exists():
        msg = (
            f"markers {str(markers)!r} is neither a file nor a shipped marker set; shipped sets: "
            f"{', '.join(shipped_names())} (scc.tl.marker_sets() lists them), or give a .csv/.tsv/.gmt/.json file"
        )
        raise InputError(msg)
    if path.is_dir():
        msg = f"markers path {str(path)!r} is a folder; give a .csv, .tsv, .gmt or .json file"
        raise InputError(msg)
    suffix = path.suffix.lower()
    where = f"marker file {str(path)!r}"
    if suffix in _JSON:
        return MarkerSets(_from_json(_read_json(path), where), where)
    if suffix in _GMT:
        return MarkerSets(_from_gmt(_read_text(path), where), where)
    if suffix in _CSV + _TSV:
        return MarkerSets(_from_table(_read_text(path), "\t" if suffix in _TSV else ",", where), where)
    msg = f"{where} has an unknown suffix {suffix!r}; use .csv (cell_type,gene), .tsv, .gmt or .json"
    raise InputError(msg)


# --------------------------------------------------------------------------- readers
def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        msg = f"cannot read marker file {str(path)!r} as UTF-8 text ({type(err).__name__}); give a text file"
        raise InputError(msg) from None


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        msg = f"marker file {str(path)!r} is not valid JSON (line {err.lineno}: {err.msg}); fix the file"
        raise InputError(msg) from None


def _from_json(doc, where: str) -> dict[str, list[str]]:
    if isinstance(doc, Mapping) and isinstance(doc.get("cell_types"), Mapping):
        doc = doc["cell_types"]
    if not isinstance(doc, Mapping):
        msg = f"{where} must hold a JSON object {{cell type: [genes]}} (or one with a 'cell_types' object)"
        raise InputError(msg)
    sets = {}
    for name, value in doc.items():
        if isinstance(value, Mapping):
            value = value.get("markers", value.get("genes"))
        sets[name] = value
    return _clean(sets, where)


def _from_gmt(text: str, where: str) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
        if len(fields) < 3 or not fields[0]:
            msg = f"{where} line {number} is not a GMT line (name<TAB>description<TAB>gene<TAB>...); fix the file"
            raise InputError(msg)
        sets.setdefault(fields[0], []).extend(g for g in fields[2:] if g)
    return _clean(sets, where)


def _from_table(text: str, delimiter: str, where: str) -> dict[str, list[str]]:
    rows = [
        (number, [f.strip() for f in row])
        for number, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1)
        if row and any(f.strip() for f in row) and not row[0].lstrip().startswith("#")
    ]
    type_col, gene_col = 0, 1
    if rows:
        header = [f.lower() for f in rows[0][1]]
        if "cell_type" in header and "gene" in header:
            type_col, gene_col = header.index("cell_type"), header.index("gene")
            rows = rows[1:]
    sets: dict[str, list[str]] = {}
    sep = "," if delimiter == "," else "<TAB>"
    for number, row in rows:
        if len(row) <= max(type_col, gene_col) or not row[type_col] or not row[gene_col]:
            msg = f"{where} line {number} does not have a cell type and a gene (cell_type{sep}gene); fix the file"
            raise InputError(msg)
        sets.setdefault(row[type_col], []).append(row[gene_col])
    return _clean(sets, where)


def _clean(sets: Mapping, where: str) -> dict[str, list[str]]:
    """Check ``{type: genes}`` and return it with string names, each gene once per type."""
    if not sets:
        msg = f"{where} holds no marker sets; give at least one cell type with its marker genes"
        raise InputError(msg)
    out: dict[str, list[str]] = {}
    for name, genes in sets.items():
        if not isinstance(name, str) or not name.strip():
            msg = f"{where}: cell type names must be non-empty strings, got {name!r}"
            raise InputError(msg)
        name = name.strip()
        if name == UNASSIGNED:
            msg = f"{where}: {UNASSIGNED!r} is reserved for clusters no set fits; rename that cell type"
            raise InputError(msg)
        if isinstance(genes, str):
            genes = [genes]
        if not isinstance(genes, Sequence) or not all(isinstance(g, str) for g in genes):
            msg = f"{where}: the markers of {name!r} must be a list of gene names (strings)"
            raise InputError(msg)
        genes = [g.strip() for g in genes if g.strip()]
        if not genes:
            msg = f"{where}: cell type {name!r} has no marker genes; add some or remove the type"
            raise InputError(msg)
        out.setdefault(name, [])
        out[name].extend(g for g in genes if g not in out[name])
        out[name] = list(dict.fromkeys(out[name]))
    return out
