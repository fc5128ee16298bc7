"""Code shared by ``benchmarks/run.py`` and ``benchmarks/scale.py``.

Parent side: :func:`run_child` runs one measurement in a fresh Python process and returns its wall
time, peak resident memory and result; :func:`machine_info`, :func:`replace_section` and the
formatting helpers build the Markdown sections of the pages in ``docs/benchmarks/``.

Child side: :func:`child_peak_rss_mb`, :func:`mark_step` and :func:`write_result`.

Peak memory is the child's ``VmHWM`` (high-water mark of its resident set, from
``/proc/<pid>/status``). ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used on Linux because the kernel
carries the parent's resident set over into a forked child's ``ru_maxrss`` at ``exec``, so every
child would report at least the harness's own memory.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
STEP_MARKER = "@@step "


# ----------------------------------------------------------------------------- child side
def child_peak_rss_mb() -> float:
    """Peak resident memory of the calling process in MB (``VmHWM``; ``ru_maxrss`` as a fallback)."""
    hwm = _read_vmhwm_kb(os.getpid())
    if hwm is not None:
        return hwm / 1024.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def mark_step(name: str) -> None:
    """Print a progress marker after a pipeline step (read by the parent if the child is killed)."""
    print(f"{STEP_MARKER}{name} {time.perf_counter():.3f}", flush=True)


def write_result(path: str | os.PathLike, result: dict[str, Any]) -> None:
    """Write the child's result as JSON (the parent reads it after the child exits)."""
    result = dict(result)
    result.setdefault("peak_rss_mb", child_peak_rss_mb())
    tmp = Path(str(path) + ".part")
    tmp.write_text(json.dumps(result, default=_json_default))
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


# ----------------------------------------------------------------------------- parent side
@dataclasses.dataclass
class ChildOutcome:
    """What the parent learned about one child process."""

    returncode: int | None
    wall_s: float
    peak_rss_mb: float | None
    timed_out: bool
    result: dict[str, Any] | None
    steps: list[str]
    log_tail: str

    @property
    def status(self) -> str:
        """``ok``, ``error``, ``na``, ``timeout``, ``killed (signal N)`` or ``exit N``."""
        if self.timed_out:
            return "timeout"
        if self.result is not None and self.returncode == 0:
            return str(self.result.get("status", "ok"))
        if self.returncode is not None and self.returncode < 0:
            return f"killed (signal {-self.returncode})"
        if self.result is not None:
            return str(self.result.get("status", "error"))
        return f"exit {self.returncode}"

    @property
    def note(self) -> str:
        """One line saying what went wrong ('' when nothing did)."""
        if self.result is not None and self.result.get("error"):
            return str(self.result["error"])
        if self.status == "ok":
            return ""
        lines = [ln for ln in self.log_tail.splitlines() if ln.strip() and not ln.startswith(STEP_MARKER)]
        return lines[-1].strip()[:300] if lines else ""


def _read_vmhwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _set_mem_limit(limit_bytes: int | None):
    if limit_bytes is None:
        return None

    def _apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return _apply


def run_child(
    argv: list[str],
    *,
    workdir: str | os.PathLike,
    tag: str,
    timeout_s: float | None = None,
    mem_limit_gb: float | None = None,
    poll_s: float = 0.2,
) -> ChildOutcome:
    """Run ``argv + ["--result", PATH]`` in a new process and measure it.

    The child's stdout/stderr go to ``<workdir>/<tag>.log``. While it runs, the parent polls its
    ``VmHWM`` so that a child killed for memory still has a peak; the child's own final reading wins
    when it finishes. ``wall_s`` is the parent-side wall time of the whole process (the children also
    report their own timings of the measured part).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result_path = workdir / f"{tag}.json"
    log_path = workdir / f"{tag}.log"
    result_path.unlink(missing_ok=True)
    limit = None if mem_limit_gb is None else int(mem_limit_gb * 1024**3)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    peak_kb: int | None = None
    timed_out = False
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*argv, "--result", str(result_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
            preexec_fn=_set_mem_limit(limit),
        )
        while proc.poll() is None:
            hwm = _read_vmhwm_kb(proc.pid)
            if hwm is not None:
                peak_kb = max(peak_kb or 0, hwm)
            if timeout_s is not None and time.perf_counter() - start > timeout_s:
                timed_out = True
                proc.kill()
                proc.wait()
                break
            time.sleep(poll_s)
    wall = time.perf_counter() - start
    result = None
    if result_path.exists():
        try:
            result = json.loads(result_path.read_text())
        except json.JSONDecodeError:
            result = None
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    steps = [ln[len(STEP_MARKER) :].split()[0] for ln in log_text.splitlines() if ln.startswith(STEP_MARKER)]
    peak = result.get("peak_rss_mb") if result else None
    if peak is None and peak_kb is not None:
        peak = peak_kb / 1024.0
    return ChildOutcome(proc.returncode, wall, peak, timed_out, result, steps, log_text[-4000:])


# ----------------------------------------------------------------------------- Markdown
def replace_section(path: str | os.PathLike, name: str, body: str, *, intro: str = "") -> None:
    """Put ``body`` between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` in the file at ``path``.

    Other sections and hand-written text are kept. The file is created (starting with ``intro``) when
    missing; a new section is appended at the end.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else intro
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + block + "\n"
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)


def fmt_mean_std(values, digits: int = 3) -> str:
    """``mean ± std`` (sample std, ``ddof=1``) of the finite values; the value alone for one, ``–`` for none."""
    import numpy as np

    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return "–"
    if arr.size == 1:  # one run: no spread to report
        return f"{arr[0]:.{digits}f}"
    return f"{arr.mean():.{digits}f} ± {arr.std(ddof=1):.{digits}f}"


def fmt_num(value, digits: int = 1) -> str:
    """A number with ``digits`` decimals, or ``–`` for missing values."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if v != v else f"{v:,.{digits}f}"


def parse_value(text: str) -> Any:
    """Parse a command-line value: JSON (numbers, true/false/null, lists) or else a plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"True": True, "False": False, "None": None}.get(text, text)


def parse_params(items: list[str], methods: list[str]) -> dict[str, dict]:
    """``["leiden:resolution=0.5", ...]`` -> ``{"leiden": {"resolution": 0.5}, ...}``."""
    params: dict[str, dict] = {m: {} for m in methods}
    for item in items:
        method, sep, rest = item.partition(":")
        name, eq, value = rest.partition("=")
        if not sep or not eq or not name:
            sys.exit(f"error: --param {item!r} must look like method:NAME=VALUE, e.g. leiden:resolution=0.5")
        if method not in params:
            sys.exit(f"error: --param {item!r} names method {method!r}, which is not in --methods")
        params[method][name] = parse_value(value)
    return params


PARTITION_PREFIX = "z1:"


def encode_partition(labels) -> str:
    """Compact text of a partition (cluster ids in cell order) for a CSV cell.

    ``"z1:"`` + base64 of the zlib-compressed codes as little-endian ``uint16`` (ids 0-65,535); about a
    tenth of the size of the JSON list. :func:`decode_partition` reads it back.
    """
    import base64
    import zlib

    import numpy as np

    codes = np.asarray(labels)
    if codes.size and (codes.min() < 0 or codes.max() > np.iinfo(np.uint16).max):
        raise ValueError("partition ids must lie in 0..65535")
    raw = codes.astype("<u2").tobytes()
    return PARTITION_PREFIX + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode_partition(text) -> list[int]:
    """The cluster ids of a partition written by :func:`encode_partition`, or by older scripts as a JSON list."""
    import base64
    import zlib

    import numpy as np

    if not isinstance(text, str):
        return list(text)
    if text.startswith(PARTITION_PREFIX):
        raw = zlib.decompress(base64.b64decode(text[len(PARTITION_PREFIX) :]))
        return np.frombuffer(raw, dtype="<u2").astype(int).tolist()
    return json.loads(text)


def counts_only(adata, label_key: str, keep: tuple[str, ...] = ()):
    """``(labels, data)``: the labels as strings, and a new AnnData holding only the counts.

    The data keep ``X``, the layers and the cell and gene names; no obs or var column, ``uns``, ``obsm``
    or ``obsp`` entry reaches the method (benchmark files carry integer copies of the labels, such as
    ``obs["label_int"]``, and other annotations), except the obs columns named in ``keep`` (a batch
    covariate the method is told to read; never the label column). No matrix is copied.
    """
    import anndata as ad
    import pandas as pd

    if label_key in keep:
        raise ValueError(f"the label column {label_key!r} cannot be handed to the method")
    labels = adata.obs[label_key].astype(str).to_numpy()
    data = ad.AnnData(
        X=adata.X,
        layers=dict(adata.layers),
        obs=pd.DataFrame({k: adata.obs[k].to_numpy() for k in keep}, index=adata.obs_names.copy()),
        var=pd.DataFrame(index=adata.var_names.copy()),
    )
    return labels, data


def params_label(params) -> str:
    """``name=value, ...`` of a run's parameters (a dict or its JSON), ``""`` for none."""
    if isinstance(params, str):
        params = json.loads(params) if params.strip() else {}
    if not isinstance(params, dict):  # missing in the CSV
        return ""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(params.items()))


def variant_label(method: str, params) -> str:
    """A method with its non-default parameters, as the tables name it: ``kmeans (k_selection="stability")``."""
    lab = params_label(params)
    return f"{method} ({lab})" if lab else method


def variant_labels(table) -> list[str]:
    """:func:`variant_label` of every row of a results table (its ``method`` and ``params`` columns)."""
    return [variant_label(m, p) for m, p in zip(table["method"], table["params"], strict=True)]


def commits_line(rows) -> str:
    """Markdown line naming the commits the rows were run at, with the number of runs at each."""
    import pandas as pd

    names = [r.get("git_commit") for r in rows]
    commits = pd.Series(
        ["unknown" if c is None or c != c else str(c) for c in names], dtype=object
    )  # c != c: NaN
    counts = commits.value_counts(sort=False)
    parts = [f"`{c}` ({n} run{'s' if n != 1 else ''})" for c, n in counts.items()]
    if len(parts) > 1:
        return "- Code: the rows come from **more than one commit**: " + ", ".join(parts) + "."
    return "- Code: every row at commit " + (parts[0] if parts else "–") + "."


def add_output_args(parser, section_default: str, page: str) -> None:
    """The output options every benchmark script shares: ``--section``, ``--csv``, ``--markdown``, ``--no-markdown``.

    ``page`` is the default Markdown file, relative to the repository root (``docs/benchmarks/<topic>.md``).
    """
    parser.add_argument("--section", default=None, help=f"Markdown section (default: {section_default})")
    parser.add_argument("--csv", type=Path, default=None, help="default: benchmarks/results/<section>.csv")
    parser.add_argument("--markdown", type=Path, default=REPO_ROOT / page, help=f"default: {page}")
    parser.add_argument("--no-markdown", action="store_true", help="write only the CSV")


class _StderrHandler(logging.StreamHandler):
    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # the current one (pytest swaps it between tests)
        super().emit(record)


def package_logs_to_stderr() -> None:
    """Print sccluster's log messages (at its verbosity) on stderr, as the command line does.

    The library itself only adds a ``NullHandler`` (issue #25); these scripts are applications and keep the
    warnings in their logs. Idempotent.
    """
    logger = logging.getLogger("sccluster")
    if not any(h.get_name() == "sccluster-benchmarks" for h in logger.handlers):
        handler = _StderrHandler()
        handler.set_name("sccluster-benchmarks")
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def parse_or_summarise(parser, argv, summary_table) -> Any:
    """Parse ``argv``; with ``--from-csv`` print ``summary_table(path)`` and return ``None`` (nothing to run).

    The parser needs ``--from-csv`` and ``--csv``; without ``--from-csv``, ``--csv`` is required.
    """
    args = parser.parse_args(argv)
    if args.from_csv:
        print(summary_table(args.from_csv))
        return None
    if args.csv is None:
        parser.error("--csv is required unless --from-csv is given")
    return args


@contextlib.contextmanager
def resumable_csv(path: Path, columns: list[str], keys: list[str], resume: bool):
    """``(write, done)``: ``write(row)`` appends a row and flushes; ``done`` the ``keys`` tuples already there.

    With ``resume`` an existing file is appended to (``done`` read from it); otherwise it is started anew.
    """
    done: set = set()
    if resume and path.is_file():
        with open(path, newline="") as fh:
            done = {tuple(r[k] for k in keys) for r in csv.DictReader(fh)}
    new = not (resume and path.is_file())
    with open(path, "w" if new else "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        if new:
            writer.writeheader()

        def write(row: dict) -> None:
            writer.writerow(row)
            fh.flush()

        yield write, done
