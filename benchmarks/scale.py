#!/usr/bin/env python
"""Scale study: end-to-end time, peak memory and ARI of a method and of scanpy at growing sizes.

Example::

    python benchmarks/scale.py --methods bgformer siamese --sizes 10000 100000 1000000 --seeds 0 1 2

For each size the source dataset is upsampled once with ``sccluster.datasets.upsample`` (every new
cell sums two real cells of one type and is thinned binomially, so labels stay true) and written to
``<workdir>/<source>_n<size>_seed<data-seed>.h5ad`` (reused when it exists with the same seed). Then
each pipeline runs once per seed of ``--seeds`` (the seed of the model, PCA, kNN and Leiden; the data
stay the same) in its own child process, timed from reading the file to writing the clustered file:

- ``sccluster <method>`` for each of ``--methods``: ``sccluster.read`` -> ``pp.prepare`` ->
  ``model.fit`` (labels_) -> write;
- ``scanpy``: read -> normalize_total -> log1p -> highly_variable_genes(2000, subset) ->
  scale(max_value=10) -> pca(50) -> neighbors(15) -> leiden(igraph, 2 iterations) -> write;
- ``scanpy (no scale)``: the same without ``scale``.

``obs["cell_type"]`` is removed before the pipeline starts and only scores the result (ARI, not timed).
The table reports, per size and pipeline, time and ARI as mean ± std over seeds and the largest peak
RSS. ``--resume`` keeps the rows of an existing CSV, failures included, and runs only what is missing
(so seeds can be added, or several invocations split the work and their CSVs be concatenated);
``--from-csv`` only renders a CSV.
Children print a marker after each step, so a child killed for memory reports the last step it
finished. Peak memory is the child's resident high-water mark (see ``_common``). Before the timer
starts, each child runs its pipeline once on 300 synthetic cells so that one-time JIT compilation
(numba in umap / pynndescent, identical for every size) is not timed (``--no-warmup`` to include it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P
from _tables import scale_ratios, scale_table

LABEL_KEY = "cell_type"
SCANPY, NOSCALE = "scanpy", "scanpy (no scale)"
COLUMNS = [
    "size",
    "pipeline",
    "time_s",
    "peak_rss_mb",
    "ari",
    "k_found",
    "status",
    "last_step",
    "note",
    "n_cells",
    "n_genes",
    "seed",
    "data_seed",
    "method",
    "k_mode",
    "params",
    "sccluster_version",
    "git_commit",
]


# ----------------------------------------------------------------------------- children
def child_make(spec: dict, result_path: str) -> None:
    """Upsample the source to ``spec["size"]`` cells and write it (atomically) with a sidecar JSON."""
    import sccluster as scc

    scc.settings.verbosity = 1

    C.package_logs_to_stderr()
    start = time.perf_counter()
    adata = scc.read(spec["source_path"])
    up = scc.datasets.upsample(adata, spec["size"], spec["seed"])
    out = Path(spec["path"])
    tmp = out.with_name(f".{out.name}.part")
    up.write_h5ad(tmp)
    tmp.rename(out)
    meta = {k: spec[k] for k in ("source", "size", "seed")}
    meta.update(n_cells=int(up.n_obs), n_genes=int(up.n_vars), make_s=time.perf_counter() - start)
    Path(spec["meta_path"]).write_text(json.dumps(meta))
    C.write_result(result_path, {"status": "ok", **meta})


def child_method(spec: dict, result_path: str) -> None:
    """read -> prepare -> fit -> write, with a step marker after each."""
    import pandas as pd

    import sccluster as scc
    from sccluster.models import get_model_class

    scc.settings.verbosity = 1

    C.package_logs_to_stderr()
    cls = get_model_class(spec["method"])
    if spec.get("warmup", True):  # one untimed fit on 300 synthetic cells: JIT compilation
        tiny = _tiny()
        scc.pp.prepare(tiny)
        cls(
            n_clusters=3 if spec["k_mode"] == "given" else None, random_state=spec["seed"], **spec["params"]
        ).fit(tiny)
    start = time.perf_counter()
    truth, adata = C.counts_only(scc.read(spec["path"]), LABEL_KEY)  # no label or annotation reaches fit
    C.mark_step("read")
    scc.pp.prepare(adata)
    C.mark_step("prepare")
    n_clusters = len(set(truth)) if spec["k_mode"] == "given" else None
    model = cls(n_clusters=n_clusters, random_state=spec["seed"], **spec["params"])
    model.fit(adata)
    C.mark_step("fit")
    adata.obs["sccluster"] = pd.Categorical(model.labels_.astype(str))
    adata.write_h5ad(spec["out_path"])
    C.mark_step("write")
    elapsed = time.perf_counter() - start
    scores = scc.metrics.evaluate(truth, model.labels_)
    _finish(result_path, elapsed, scores, adata.shape)


def _scanpy_steps(adata, *, seed: int, scale: bool, mark=lambda step: None):
    """normalize_total -> log1p -> HVG(2000, subset) -> [scale] -> pca(50) -> neighbors(15) -> leiden."""
    import scanpy as sc

    sc.pp.normalize_total(adata)
    mark("normalize_total")
    sc.pp.log1p(adata)
    mark("log1p")
    sc.pp.highly_variable_genes(adata, n_top_genes=min(2000, adata.n_vars), subset=True)
    mark("highly_variable_genes")
    if scale:
        sc.pp.scale(adata, max_value=10)
        mark("scale")
    sc.pp.pca(adata, n_comps=min(50, adata.n_vars - 1), random_state=seed)
    mark("pca")
    sc.pp.neighbors(adata, n_neighbors=15, random_state=seed)
    mark("neighbors")
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    mark("leiden")


def _tiny():
    from sccluster.datasets import synthetic

    return synthetic(n_cells=300, n_genes=100, n_clusters=3, n_markers=10, random_state=0)


def child_scanpy(spec: dict, result_path: str) -> None:
    """The standard scanpy pipeline (with or without ``scale``), a step marker after each step."""
    import anndata as ad

    import sccluster as scc

    seed = spec["seed"]
    if spec.get("warmup", True):  # JIT-compile numba code (umap, pynndescent) before timing
        _scanpy_steps(_tiny(), seed=seed, scale=spec["scale"])
    start = time.perf_counter()
    truth, adata = C.counts_only(ad.read_h5ad(spec["path"]), LABEL_KEY)
    shape = adata.shape
    C.mark_step("read")
    _scanpy_steps(adata, seed=seed, scale=spec["scale"], mark=C.mark_step)
    adata.write_h5ad(spec["out_path"])
    C.mark_step("write")
    elapsed = time.perf_counter() - start
    _finish(result_path, elapsed, scc.metrics.evaluate(truth, adata.obs["leiden"].to_numpy()), shape)


def _finish(result_path: str, elapsed: float, scores: dict, shape) -> None:
    C.write_result(
        result_path,
        {
            "status": "ok",
            "time_s": elapsed,
            "ari": scores["ari"],
            "k_found": scores["n_clusters"],
            "n_cells": shape[0],
            "n_genes": shape[1],
        },
    )


CHILDREN = {"make": child_make, "method": child_method, "scanpy": child_scanpy}


def run_child_main(kind: str, spec: dict, result_path: str) -> None:
    try:
        CHILDREN[kind](spec, result_path)
    except Exception as err:  # noqa: BLE001 - reported as a failed row by the parent
        traceback.print_exc()
        C.write_result(
            result_path, {"status": "error", "error": f"{type(err).__name__}: {err}".splitlines()[0]}
        )


# ----------------------------------------------------------------------------- parent
def ensure_dataset(args, size: int) -> tuple[Path, dict]:
    """The upsampled file for ``size`` (made in a child unless a matching one exists) and its metadata."""
    path = args.workdir / f"{args.source}_n{size}_seed{args.data_seed}.h5ad"
    meta_path = path.with_suffix(".json")
    want = {"source": args.source, "size": size, "seed": args.data_seed}
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in want.items()):
            return path, {**meta, "reused": True}
    source_path = args.data_dir / f"{args.source}.h5ad"
    if not source_path.is_file():
        sys.exit(f"error: source dataset {str(source_path)!r} not found; check --source and --data-dir")
    spec = {**want, "source_path": str(source_path), "path": str(path), "meta_path": str(meta_path)}
    res = C.run_child(
        _argv("make", spec), workdir=args.workdir / "logs", tag=f"make_n{size}", timeout_s=args.timeout_s
    )
    if res.status != "ok":
        sys.exit(f"error: making the {size}-cell dataset failed: {res.status} {res.note}")
    return path, {**res.result, "reused": False}


def _argv(kind: str, spec: dict) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--spec", json.dumps(spec)]


def run_pipeline(args, size: int, path: Path, pipeline: str, seed: int, method: str | None = None) -> dict:
    """Run one pipeline (a scanpy one, or ``method``'s) on one size with one seed in a child; return its row."""
    # unique per (size, pipeline, seed), so that concurrent invocations can share a workdir
    tag = f"n{size}_{pipeline.replace(' ', '_').replace('(', '').replace(')', '')}_seed{seed}"
    out_path = args.workdir / f"out_{tag}.h5ad"
    spec = {"path": str(path), "out_path": str(out_path), "seed": seed, "warmup": not args.no_warmup}
    if pipeline in (SCANPY, NOSCALE):
        kind, spec["scale"] = "scanpy", pipeline == SCANPY
    else:
        kind = "method"
        spec.update(method=method, k_mode=args.k_mode, params=args.params.get(method, {}))
    res = C.run_child(
        _argv(kind, spec),
        workdir=args.workdir / "logs",
        tag=tag,
        timeout_s=args.timeout_s,
        mem_limit_gb=args.mem_limit_gb,
    )
    if not args.keep_outputs:
        out_path.unlink(missing_ok=True)
    r = res.result or {}
    row = {c: r.get(c) for c in COLUMNS}
    row.update(
        size=size,
        pipeline=pipeline,
        peak_rss_mb=res.peak_rss_mb,
        status=res.status,
        seed=seed,
        last_step=res.steps[-1] if res.steps else "",
        note=res.note,
        **_setting(args, method),
    )
    if res.status != "ok":  # a failed pipeline has no end-to-end time; how long it ran is in the note
        row["note"] = (
            f"{row['note']} (ran {res.wall_s:.0f} s; log {args.workdir / 'logs' / (tag + '.log')})".strip()
        )
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--methods",
        "--method",
        nargs="+",
        default=["bgformer"],
        help="sccluster methods ('none' for scanpy only)",
    )
    p.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    p.add_argument("--source", default="pbmc_4k_top2000", help="dataset name in --data-dir")
    p.add_argument(
        "--seeds",
        "--seed",
        nargs="+",
        type=int,
        default=[0],
        help="seeds of the pipelines (one run per seed)",
    )
    p.add_argument(
        "--data-seed", type=int, default=0, help="seed of the upsampling (the same data for every seed)"
    )
    p.add_argument(
        "--baseline-seeds",
        nargs="+",
        type=int,
        default=None,
        help="seeds for the scanpy pipelines (default: --seeds)",
    )
    p.add_argument(
        "--k",
        choices=["auto", "given"],
        default="auto",
        dest="k_mode",
        help="n_clusters=None (auto, default, like Leiden) or the number of label categories",
    )
    p.add_argument(
        "--param", action="append", default=[], metavar="METHOD:NAME=VALUE", help="method hyperparameter"
    )
    p.add_argument("--baseline", choices=["scanpy", "none"], default="scanpy")
    p.add_argument("--no-noscale", action="store_true", help="skip the scanpy pipeline without scale")
    p.add_argument("--data-dir", type=Path, default=None, help="default: sccluster.settings.datasetdir")
    p.add_argument(
        "--no-warmup",
        action="store_true",
        help="time JIT compilation too (default: each child first runs its pipeline on 300 synthetic cells)",
    )
    p.add_argument("--workdir", type=Path, default=Path("/tmp/sccluster_scale"))
    p.add_argument("--keep-outputs", action="store_true", help="keep the clustered .h5ad files")
    p.add_argument("--mem-limit-gb", type=float, default=None, help="RLIMIT_AS of each pipeline child")
    p.add_argument("--timeout-s", type=float, default=None, help="per child (default: none)")
    C.add_output_args(p, "scale-<methods>", "docs/benchmarks/scale.md")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows of an existing --csv and skip their runs (failures too: delete a row to rerun it)",
    )
    p.add_argument("--from-csv", type=Path, default=None, help="only render this CSV into the section")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child_main(args.child, json.loads(args.spec), args.result)
        return 0
    import pandas as pd
    from tqdm.auto import tqdm

    args.data_dir = args.data_dir or P.default_data_dir()
    methods = [] if args.methods == ["none"] else list(args.methods)
    args.params = C.parse_params(args.param, methods)
    args.workdir.mkdir(parents=True, exist_ok=True)
    method_of = {f"sccluster {m}": m for m in methods}
    baselines = [SCANPY] + ([] if args.no_noscale else [NOSCALE]) if args.baseline == "scanpy" else []
    baseline_seeds = args.seeds if args.baseline_seeds is None else args.baseline_seeds
    section = args.section or "scale-" + ("-".join(methods) or "scanpy")
    if args.from_csv is not None:
        table = results_table(read_results(args.from_csv), list(method_of))
        if not args.no_markdown:
            C.replace_section(args.markdown, section, _section_body(args, argv, args.from_csv, table, None))
        print(table)
        return 0
    csv_path = args.csv or C.REPO_ROOT / "benchmarks" / "results" / f"{section}.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)

    done = {_row_key(r): r for r in read_results(csv_path).to_dict("records")} if args.resume else {}
    version, commit = P.sccluster_version(), P.git_commit()
    plan = plan_runs(args.sizes, list(method_of), args.seeds, baselines, baseline_seeds)
    planned = {(size, pipe, seed) for size, seed, pipe in plan}
    kept = [r for k, r in done.items() if k not in planned]  # resumed rows outside this plan stay in the CSV
    rows, made = [], []
    bar = tqdm(total=len(plan) + len(args.sizes), desc="scale study", unit="step")
    for size in args.sizes:
        bar.set_postfix_str(f"{size:,} cells: upsampling")
        path, meta = ensure_dataset(args, size)
        made.append(meta)
        bar.update()
        for _, seed, pipe in [p for p in plan if p[0] == size]:
            key = (size, pipe, seed)
            if key in done and _same_setting(done[key], args, method_of.get(pipe)):
                rows.append(done[key])
                bar.update()
                continue
            bar.set_postfix_str(f"{size:,} cells: {pipe}, seed {seed}")
            row = run_pipeline(args, size, path, pipe, seed, method_of.get(pipe))
            row.update(sccluster_version=version, git_commit=commit)
            rows.append(row)
            bar.update()
            tqdm.write(
                f"{size:>9,} {pipe:<22} seed {seed} {row['status']:<10} t={C.fmt_num(row['time_s'])} s "
                f"rss={C.fmt_num(row['peak_rss_mb'], 0)} MB ari={C.fmt_num(row['ari'], 3)}"
            )
            _write_csv(pd.DataFrame(kept + rows, columns=COLUMNS), csv_path)  # after every run
        df = pd.DataFrame(kept + rows, columns=COLUMNS)
        table = results_table(df, list(method_of))
        if not args.no_markdown:
            C.replace_section(args.markdown, section, _section_body(args, argv, csv_path, table, made))
    bar.close()
    print(table)
    return 0


def plan_runs(
    sizes: list[int],
    method_pipelines: list[str],
    seeds: list[int],
    baselines: list[str],
    baseline_seeds: list[int],
) -> list[tuple[int, int, str]]:
    """``(size, seed, pipeline)`` in run order: by size, then seed; methods before the scanpy baselines."""
    return [
        (size, seed, pipe)
        for size in sizes
        for seed in sorted(set(seeds) | set(baseline_seeds))
        for pipe in [p for p in method_pipelines if seed in seeds]
        + [p for p in baselines if seed in baseline_seeds]
    ]


def _write_csv(df, path: Path) -> None:
    """Write ``df`` to ``path`` through a temporary file, so an interrupted write keeps the old CSV."""
    tmp = path.with_name(f".{path.name}.part")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def read_results(path: Path):
    """Rows of a scale CSV (empty when the file is missing); CSVs from before ``data_seed`` get seed 0."""
    import pandas as pd

    if not Path(path).is_file():
        return pd.DataFrame(columns=COLUMNS)
    df = pd.read_csv(path)
    if "data_seed" not in df:
        df["data_seed"] = 0
    return df.reindex(columns=COLUMNS)


def _row_key(row: dict) -> tuple:
    return int(row["size"]), str(row["pipeline"]), int(row["seed"])


def _setting(args, method: str | None) -> dict:
    """What a row of this invocation records about how it ran, beyond size, pipeline and seed."""
    return {
        "method": method or "",
        "k_mode": args.k_mode if method else "",
        "params": json.dumps(args.params.get(method, {}) if method else {}, sort_keys=True),
        "data_seed": args.data_seed,
    }


def _same_setting(row: dict, args, method: str | None) -> bool:
    """Whether a resumed row ran with this invocation's method, k mode, parameters and data seed."""

    def norm(value) -> str:
        if value is None or value != value:  # missing (NaN) in the CSV
            return ""
        if isinstance(value, (int, float)) and float(value).is_integer():
            return str(int(value))
        return str(value)

    want = _setting(args, method)
    return all(norm(row.get(k)) == norm(v) for k, v in want.items())


def results_table(df, method_pipelines: list[str]) -> str:
    return scale_table(df, scale_ratios(df, method_pipelines, [SCANPY, NOSCALE]))


def _section_body(args, argv, csv_path, table, made) -> str:
    """The Markdown section; ``made`` (the upsampled files' metadata) is ``None`` when only rendering."""
    if made is None:
        data = "see the CSV"
    else:
        data = "; ".join(
            f"{m['size']:,} cells ({m.get('n_cells', '?')} x {m.get('n_genes', '?')}, "
            + ("reused" if m.get("reused") else f"made in {m.get('make_s', 0):.0f} s")
            + ")"
            for m in made
        )
    rel = csv_path.relative_to(C.REPO_ROOT) if csv_path.is_relative_to(C.REPO_ROOT) else csv_path
    lines = [
        f"## Scale study: {', '.join(m for m in args.methods if m != 'none') or 'scanpy only'}",
        "",
        *P.provenance_lines(sys.argv if argv is None else [__file__, *argv]),
        f"- Data: `{args.source}` upsampled with seed {args.data_seed} (`sccluster.datasets.upsample`): {data}",
        C.commits_line(read_results(csv_path).to_dict("records")),
        f"- Raw rows: `{rel}`. Wall time is end to end: read -> preprocess -> cluster -> write the "
        "clustered .h5ad (ARI is computed afterwards, not timed; "
        + (
            "JIT compilation included"
            if args.no_warmup
            else "after an untimed warm-up on 300 synthetic cells"
        )
        + "); peak RSS is the child's high-water mark. Time and ARI: mean ± std over the seeds that "
        "finished; peak RSS: the largest over seeds.",
        "",
        table,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
