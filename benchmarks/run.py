#!/usr/bin/env python
"""Benchmark harness: methods x datasets x seeds x k-modes, one child process per run.

Example::

    python benchmarks/run.py --methods leiden kmeans --seeds 0 1 2 --k both --section baselines

Every run executes in a fresh Python process (this script with ``--single``) so that its wall time
and peak resident memory are its own. The child reads the dataset, sets ``obs["cell_type"]`` aside and
hands the method a new AnnData with the counts and names only (plus the obs column of a ``batch_key``
parameter, e.g. ``--param bgformer:batch_key=batch``), then times ``sccluster.pp.prepare`` + ``model.fit`` (everything after reading;
``time_s``; ``prepare_s`` and ``fit_s`` are also kept) and finally scores ``labels_`` against the
removed labels with ``sccluster.metrics.evaluate``. The partition itself is kept in the CSV
(``partition``: ``labels_`` in cell order, compressed by ``_common.encode_partition``; older rows hold a
JSON list, and ``_common.decode_partition`` reads both), so label-free comparisons between runs,
such as the seed-to-seed agreement of ``stability.py --from-csv``, need no refit. Before reading, the
child fits the same method once on 300 synthetic cells (``warmup_s``, not timed; ``--no-warmup`` turns
it off) so that one-time JIT compilation (numba, in umap / pynndescent) does not dominate the time of
small datasets. "k given" passes the number of label categories as ``n_clusters`` (as published
benchmarks do); "k auto" passes ``n_clusters=None``. Peak memory covers the whole child (reading
included). Results go to a CSV (one row per run) and an aggregated
Markdown section of ``docs/benchmarks/clustering.md`` (see ``aggregate`` and ``markdown_table``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P
from _tables import aggregate, markdown_table

CSV_COLUMNS = [
    "method",
    "dataset",
    "k_mode",
    "seed",
    "n_cells",
    "n_genes",
    "true_k",
    "k_found",
    "ari",
    "nmi",
    "acc",
    "time_s",
    "prepare_s",
    "fit_s",
    "warmup_s",
    "peak_rss_mb",
    "status",
    "note",
    "params",
    "sccluster_version",
    "git_commit",
    "partition",
]
K_MODES = {"given": ["given"], "auto": ["auto"], "both": ["given", "auto"]}
LABEL_KEY = "cell_type"


# ----------------------------------------------------------------------------- child
def run_single(spec: dict, result_path: str) -> None:
    """Child process: one (method, dataset, seed, k-mode) run; writes its result JSON."""
    out: dict = {"status": "ok"}
    try:
        from peers import method_class  # sccluster's methods, or a peer such as scvi-tools

        import sccluster as scc

        scc.settings.verbosity = 1

        C.package_logs_to_stderr()
        cls = method_class(spec["method"])
        if spec.get("warmup", True):
            out["warmup_s"] = _warm_up(scc, cls, spec)
        keep = (spec["params"]["batch_key"],) if spec["params"].get("batch_key") else ()
        labels, adata = C.counts_only(scc.read(spec["path"]), LABEL_KEY, keep)  # no label reaches fitting
        true_k = int(len(set(labels)))
        out.update(n_cells=int(adata.n_obs), n_genes=int(adata.n_vars), true_k=true_k)
        n_clusters = true_k if spec["k_mode"] == "given" else None
        start = time.perf_counter()
        model = cls(n_clusters=n_clusters, random_state=spec["seed"], **spec["params"])
        scc.pp.prepare(adata)
        out["prepare_s"] = time.perf_counter() - start
        model.fit(adata)
        out["time_s"] = time.perf_counter() - start
        out["fit_s"] = getattr(model, "fit_time_", None)
        reused = getattr(
            model, "reused_time_s_", None
        )  # a peer's training reused from the other k mode's run
        if reused is not None:
            out["time_s"] += reused
            out["note"] = (
                f"latent reused from the run with the other k mode; its {reused:.0f} s of training counted"
            )
        scores = scc.metrics.evaluate(labels, model.labels_)
        out.update(ari=scores["ari"], nmi=scores["nmi"], acc=scores["acc"], k_found=scores["n_clusters"])
        out["partition"] = C.encode_partition(model.labels_)  # C.decode_partition reads it
        if spec.get("embedding_dir"):  # for label-free diagnostics of the embedding (diagnostics.py)
            import numpy as np

            name = f"{spec['method']}_{spec['k_mode']}_{spec['dataset']}_s{spec['seed']}.npy"
            np.save(Path(spec["embedding_dir"]) / name, np.asarray(model.embedding_, dtype=np.float16))
    except Exception as err:  # noqa: BLE001 - a failed run becomes an error row
        traceback.print_exc()
        out.update(
            status="error", error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        )
    C.write_result(result_path, out)


def _warm_up(scc, cls, spec: dict) -> float:
    """Fit the method once on 300 synthetic cells so one-time JIT compilation (numba) is not timed."""
    start = time.perf_counter()
    batch_key = spec["params"].get("batch_key")
    tiny = scc.datasets.synthetic(n_cells=300, n_genes=100, n_clusters=3, n_markers=10, random_state=0,
                                  **({"n_batches": 2} if batch_key else {}))  # fmt: skip
    if batch_key:
        tiny.obs[batch_key] = tiny.obs["batch"]
    try:
        scc.pp.prepare(tiny)
        n_clusters = 3 if spec["k_mode"] == "given" else None
        cls(n_clusters=n_clusters, random_state=spec["seed"], **spec["params"]).fit(tiny)
    except Exception:  # noqa: BLE001 - the real run reports any real problem
        traceback.print_exc()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- parent
def find_datasets(data_dir: Path, names: list[str]) -> list[Path]:
    """The ``.h5ad`` files to run: all of ``data_dir`` for ``all``, else the named ones (or paths)."""
    if names in (["all"], []):
        files = sorted(data_dir.glob("*.h5ad"))
        if not files:
            sys.exit(f"error: no .h5ad files in {str(data_dir)!r}; pass --data-dir with the benchmark data")
        return files
    files = []
    for name in names:
        cand = Path(name) if name.endswith(".h5ad") else data_dir / f"{name}.h5ad"
        if not cand.is_file():
            sys.exit(f"error: dataset {name!r} not found (looked for {str(cand)!r}); see --data-dir")
        files.append(cand)
    return files


def plan_runs(
    methods, files, seeds, k_modes, params, warmup: bool = True, embedding_dir: Path | None = None
) -> list[dict]:
    """One spec per (method, k-mode, dataset, seed); seeds outermost so that an interrupted run
    already covers every combination once."""
    return [
        {
            "method": m,
            "k_mode": k,
            "dataset": f.stem,
            "path": str(f.resolve()),
            "seed": s,
            "params": params[m],
            "warmup": warmup,
            **({"embedding_dir": str(embedding_dir.resolve())} if embedding_dir else {}),
        }
        for s in seeds
        for m in methods
        for k in k_modes
        for f in files
    ]


def execute(spec: dict, *, logdir: Path, timeout_s: float | None) -> dict:
    """Run one spec in a child process and return its CSV row."""
    tag = f"{spec['method']}_{spec['k_mode']}_{spec['dataset']}_s{spec['seed']}"
    argv = [sys.executable, str(Path(__file__).resolve()), "--single", json.dumps(spec)]
    res = C.run_child(argv, workdir=logdir, tag=tag, timeout_s=timeout_s)
    r = res.result or {}
    status = res.status
    note = res.note if status != "ok" else r.get("note") or ""
    if status not in ("ok", "na"):
        note = f"{note} (log: {logdir / (tag + '.log')})".strip()
    row = {c: r.get(c) for c in CSV_COLUMNS}
    row.update(
        method=spec["method"],
        dataset=spec["dataset"],
        k_mode=spec["k_mode"],
        seed=spec["seed"],
        peak_rss_mb=res.peak_rss_mb,
        status=status,
        note=note,
        params=json.dumps(spec["params"], sort_keys=True),
    )
    return row


def _key(row: dict) -> tuple:
    """What makes a result row: the run's method, dataset, k mode, seed and parameters, and whether the
    untimed warm-up fit ran first (it left ``warmup_s``)."""
    warm = row.get("warmup_s") not in (None, "") and row.get("warmup_s") == row.get("warmup_s")
    return (row["method"], row["dataset"], row["k_mode"], str(row["seed"]), str(row["params"]), warm)


def _spec_key(spec: dict) -> tuple:
    """:func:`_key` of the row that ``spec`` will produce."""
    params = json.dumps(spec["params"], sort_keys=True)
    return (spec["method"], spec["dataset"], spec["k_mode"], str(spec["seed"]), params, bool(spec["warmup"]))


def done_rows(csv_path: Path, specs: list[dict]) -> list[dict]:
    """Rows of an earlier CSV that finished (ok / not applicable) and belong to ``specs``.

    Rows from other commits are kept too; the section then names every commit (:func:`C.commits_line`).
    """
    return _earlier_rows(csv_path, specs)[0]


def _earlier_rows(csv_path: Path, specs: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(finished rows of specs, rows of runs outside specs)`` of an earlier CSV."""
    if not csv_path.is_file():
        return [], []
    wanted = {_spec_key(s) for s in specs}
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    done = [r for r in rows if r.get("status") in ("ok", "na") and _key(r) in wanted]
    return done, [r for r in rows if _key(r) not in wanted]


def run_grid(
    specs: list[dict], csv_path: Path, logdir: Path, timeout_s: float | None, resume: bool = False
) -> list[dict]:
    """Run every spec in its own child, writing each row to the CSV as soon as it is done.

    With ``resume``, finished rows of an existing CSV are kept and their runs skipped, and its rows of
    other runs (other methods, parameters, datasets or seeds) stay in the file; the rows returned are
    those of ``specs`` only.
    """
    from tqdm.auto import tqdm

    version, commit = P.sccluster_version(), P.git_commit()
    rows, others = _earlier_rows(csv_path, specs) if resume else ([], [])
    have = {_key(r) for r in rows}
    specs = [s for s in specs if _spec_key(s) not in have]
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(others)
        writer.writerows(rows)
        fh.flush()
        bar = tqdm(specs, desc="benchmark runs", unit="run")
        for spec in bar:
            bar.set_postfix_str(f"{spec['method']}/{spec['k_mode']}/{spec['dataset']}/seed {spec['seed']}")
            row = execute(spec, logdir=logdir, timeout_s=timeout_s)
            row.update(sccluster_version=version, git_commit=commit)
            rows.append(row)
            writer.writerow(row)
            fh.flush()
            if row["status"] not in ("ok", "na"):
                tqdm.write(
                    f"{row['method']} {row['k_mode']} {row['dataset']} seed {row['seed']}: "
                    f"{row['status']} {row['note']}"
                )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["leiden", "kmeans"])
    p.add_argument("--datasets", nargs="+", default=["all"], help="'all' or dataset names / .h5ad paths")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--k", choices=sorted(K_MODES), default="given", dest="k_mode")
    p.add_argument("--data-dir", type=Path, default=None, help="default: sccluster.settings.datasetdir")
    C.add_output_args(p, "the methods", "docs/benchmarks/clustering.md")
    p.add_argument("--title", default=None, help="heading of the section (default: the section name)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD:NAME=VALUE")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="per run (default 3600)")
    p.add_argument("--no-warmup", action="store_true", help="time the first fit, JIT compilation included")
    p.add_argument("--log-dir", type=Path, default=None, help="child logs (default: a temporary folder)")
    p.add_argument(
        "--save-embeddings", type=Path, default=None, metavar="DIR",
        help="also save each run's embedding_ (float16 .npy) in DIR",
    )  # fmt: skip
    p.add_argument(
        "--resume", action="store_true", help="keep finished runs of an existing --csv, run the rest"
    )
    p.add_argument("--from-csv", type=Path, default=None, help="rebuild the Markdown from a CSV, run nothing")
    p.add_argument("--single", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.single:
        run_single(json.loads(args.single), args.result)
        return 0
    data_dir = args.data_dir or P.default_data_dir()
    files = find_datasets(Path(data_dir), args.datasets)
    params = C.parse_params(args.param, args.methods)
    section = args.section or "-".join(args.methods)
    csv_path = args.csv or C.REPO_ROOT / "benchmarks" / "results" / f"{section}.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    if args.save_embeddings:
        args.save_embeddings.mkdir(parents=True, exist_ok=True)
    specs = plan_runs(
        args.methods,
        files,
        args.seeds,
        K_MODES[args.k_mode],
        params,
        not args.no_warmup,
        args.save_embeddings,
    )
    import pandas as pd

    extra = []
    if args.from_csv:
        rows = pd.read_csv(args.from_csv, keep_default_na=False, na_values=[""]).to_dict("records")
        n_all = len(rows)
        rows = select_rows(rows, args.methods, K_MODES[args.k_mode], args.seeds)
        csv_path, logdir = args.from_csv, "(not run)"
        extra = [
            f"- Table rebuilt from the CSV alone (`--from-csv`): {len(rows)} of its {n_all} runs "
            "(those of the methods, k modes and seeds named)."
        ]
    else:
        logdir = args.log_dir or Path(tempfile.mkdtemp(prefix="sccluster_bench_"))
        rows = run_grid(specs, csv_path, logdir, args.timeout_s, resume=args.resume)
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    if not args.from_csv:  # table order: methods and k modes as asked, datasets as listed, then seeds
        order = {
            key: i
            for i, key in enumerate(
                dict.fromkeys(
                    (s["method"], s["k_mode"], s["dataset"])
                    for s in sorted(
                        specs,
                        key=lambda s: (
                            args.methods.index(s["method"]),
                            K_MODES[args.k_mode].index(s["k_mode"]),
                        ),
                    )
                )
            )
        }
        df = (
            df.assign(
                _o=[
                    order[(m, k, d)]
                    for m, k, d in zip(df["method"], df["k_mode"], df["dataset"], strict=True)
                ],
                _s=pd.to_numeric(df["seed"]),
            )
            .sort_values(["_o", "_s"], kind="stable")
            .drop(columns=["_o", "_s"])
        )
    check_unique(df)
    df["method"] = C.variant_labels(df)
    table = markdown_table(aggregate(df))
    if not args.no_markdown:
        body = "\n".join(
            [
                f"## {args.title or section}",
                "",
                *P.provenance_lines(sys.argv if argv is None else [__file__, *argv]),
                f"- Raw rows: `{_rel(csv_path)}`",
                C.commits_line(rows),
                *extra,
                "",
                table,
            ]
        )
        C.replace_section(args.markdown, section, body, intro=INTRO)
    print(table)
    n_bad = sum(r["status"] not in ("ok", "na") for r in rows)
    if n_bad:
        print(f"{n_bad} of {len(rows)} runs failed; logs in {logdir}", file=sys.stderr)
    return 0


def select_rows(rows: list[dict], methods: list[str], k_modes: list[str], seeds: list[int]) -> list[dict]:
    """The rows of the named methods, k modes and seeds (``--from-csv`` renders only what was asked)."""
    return [
        r
        for r in rows
        if r["method"] in methods and r["k_mode"] in k_modes and int(float(r["seed"])) in set(seeds)
    ]


def check_unique(df) -> None:
    """Exit with an error when two rows are the same run (method, parameters, k mode, dataset, seed)."""
    cols = ["method", "params", "k_mode", "dataset", "seed"]
    keys = df[cols].astype(str)
    dup = keys[keys.duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0].to_dict()
        sys.exit(f"error: {len(dup)} rows repeat a run (e.g. {first}); keep one row per run in the CSV")


def _rel(path: Path) -> Path:
    return path.relative_to(C.REPO_ROOT) if path.is_relative_to(C.REPO_ROOT) else path


INTRO = "# Benchmarks\n\nGenerated by `benchmarks/run.py` and `benchmarks/scale.py` (see `benchmarks/README.md`).\n"

if __name__ == "__main__":
    sys.exit(main())
