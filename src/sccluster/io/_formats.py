"""Which reader handles a path: format names, extensions and 10x folder detection."""

from __future__ import annotations

from pathlib import Path

from sccluster._errors import InputError

#: Format names accepted by ``read(..., format=...)`` (aliases map onto them).
FORMATS = ("h5ad", "zarr", "10x_h5", "10x_mtx", "loom", "csv", "tsv", "txt")
_ALIASES = {"h5": "10x_h5", "10x": "10x_h5", "mtx": "10x_mtx", "10x_mtx_dir": "10x_mtx", "anndata": "h5ad"}
_EXTENSIONS = {
    ".h5ad": "h5ad",
    ".zarr": "zarr",
    ".h5": "10x_h5",
    ".hdf5": "10x_h5",
    ".loom": "loom",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "txt",
    ".mtx": "10x_mtx",
}
SUPPORTED_TEXT = (
    ".h5ad, an AnnData .zarr store, 10x .h5, a 10x Matrix Market folder (matrix.mtx[.gz], barcodes.tsv[.gz], "
    "features.tsv[.gz] or genes.tsv), .loom, .csv/.tsv/.txt (optionally .gz)"
)

_MATRIX_NAMES = ("matrix.mtx", "matrix.mtx.gz")
_BARCODE_NAMES = ("barcodes.tsv", "barcodes.tsv.gz")
_FEATURE_NAMES = ("features.tsv", "features.tsv.gz", "genes.tsv", "genes.tsv.gz")


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def mtx_files(folder: Path) -> tuple[Path, Path, Path]:
    """Return (matrix, barcodes, features) of a 10x Matrix Market folder, or raise InputError."""
    matrix = _first_existing(folder, _MATRIX_NAMES)
    barcodes = _first_existing(folder, _BARCODE_NAMES)
    features = _first_existing(folder, _FEATURE_NAMES)
    missing = [
        label
        for label, found in (
            ("matrix.mtx[.gz]", matrix),
            ("barcodes.tsv[.gz]", barcodes),
            ("features.tsv[.gz] or genes.tsv[.gz]", features),
        )
        if found is None
    ]
    if missing:
        msg = (
            f"folder {str(folder)!r} is not a 10x Matrix Market folder (missing {', '.join(missing)}); "
            f"point to a data file or a folder with those files (supported: {SUPPORTED_TEXT})"
        )
        raise InputError(msg)
    return matrix, barcodes, features  # type: ignore[return-value]


def normalise_format(fmt: str) -> str:
    """Map a user-given format name onto one of :data:`FORMATS`."""
    key = str(fmt).lower().lstrip(".")
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        msg = f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}"
        raise InputError(msg)
    return key


def detect_format(path: Path) -> str:
    """Guess the format of an existing ``path`` from its extension (or folder contents)."""
    if path.is_dir() and path.suffix.lower() == ".zarr":
        return "zarr"
    if path.is_dir():
        mtx_files(path)  # raises when it is not a 10x folder
        return "10x_mtx"
    if path.name.startswith(".") and path.name.endswith(".part"):
        msg = (
            f"{str(path)!r} is the temporary file of an unfinished write (a run interrupted or still running), "
            "not a result; read the finished output file, or rerun the command that writes it"
        )
        raise InputError(msg)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    msg = (
        f"unknown format of {str(path)!r} (extension {ext or 'none'!r}); supported: {SUPPORTED_TEXT}; "
        "rename the file with a supported extension (or pass format= to scc.read)"
    )
    raise InputError(msg)


def short_reason(err: BaseException) -> str:
    """One-line, bounded description of a library exception (no traceback text)."""
    text = " ".join(str(err).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
