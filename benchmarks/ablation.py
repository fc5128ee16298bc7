#!/usr/bin/env python
"""Ablation study: each component of a method replaced in turn by its plain alternative.

Example::

    python benchmarks/ablation.py --method siamese --datasets pbmc_4k_top2000 mouse_bladder_top2000 \\
        --seeds 0 1 2 --reuse benchmarks/results/siamese.csv

Each variant is the method with one switch turned off (see ``VARIANTS``); everything else, the
child processes, timing and scoring are those of ``run.py`` (labels are removed before fitting and
only score the result). ``--reuse`` takes finished rows of the full model (no parameters) from a CSV
of ``run.py``, so the reference row is the very run reported in the main table. The section holds one
line per variant: ARI per dataset (mean ± std over seeds), the mean over datasets, and the change
from the full model.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P
import run as R

# variant name -> (what replaces the component, constructor switches)
VARIANTS: dict[str, dict[str, tuple[str, dict]]] = {
    "siamese": {
        "full model": ("", {}),
        "- dual augmentation": ("one clean view of expression and of the graph", {"use_augmentation": False}),
        "- cross-correlation": ("no sample/feature correlation losses", {"use_correlation": False}),
        "- adaptive fusion": ("plain mean of the two embeddings", {"use_fusion": False}),
        "- Sinkhorn": ("DEC target instead of the OT target", {"use_sinkhorn": False}),
    },
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="siamese", choices=sorted(VARIANTS))
    p.add_argument("--datasets", nargs="+", default=["pbmc_4k_top2000", "mouse_bladder_top2000"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--k", choices=["given", "auto"], default="given", dest="k_mode")
    p.add_argument("--data-dir", type=Path, default=None, help="default: sccluster.settings.datasetdir")
    p.add_argument("--reuse", type=Path, default=None, help="run.py CSV whose full-model rows are reused")
    C.add_output_args(p, "<method>-ablation", "docs/benchmarks/experiments.md")
    p.add_argument("--resume", action="store_true", help="keep finished runs of an existing --csv")
    p.add_argument("--log-dir", type=Path, default=None)
    p.add_argument("--timeout-s", type=float, default=3600.0)
    return p.parse_args(argv)


def plan(args, files: list[Path]) -> list[dict]:
    specs = []
    for _, params in VARIANTS[args.method].values():
        specs += R.plan_runs([args.method], files, args.seeds, [args.k_mode], {args.method: params})
    return specs


def reuse_rows(path: Path | None, specs: list[dict]) -> list[dict]:
    """Finished full-model rows of another CSV that match ``specs``."""
    if path is None or not path.is_file():
        return []
    full = [s for s in specs if not s["params"]]
    rows = R.done_rows(path, full)
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    return [{c: r.get(c) for c in header} for r in rows]


def ablation_table(df, method: str, datasets: list[str]) -> str:
    """Markdown: one line per variant, ARI per dataset (mean ± std), mean and change from the full model."""
    import numpy as np

    lines = [
        "| variant | replaced by | "
        + " | ".join(f"{d} ARI" for d in datasets)
        + " | mean ARI | Δ vs full | runs ok |",
        "|---|---|" + "---|" * len(datasets) + "---|---|---|",
    ]
    notes = []
    full_mean = None
    for name, (replacement, params) in VARIANTS[method].items():
        runs = df[df["params"] == json.dumps(params, sort_keys=True)]
        cells, means = [], []
        for d in datasets:
            here = runs[runs["dataset"] == d]
            vals = here.loc[here["status"] == "ok", "ari"].astype(float).to_numpy()
            short = f" ({len(vals)} of {len(here)} ok)" if len(vals) < len(here) else ""
            cells.append(C.fmt_mean_std(vals) + short)
            means.append(vals.mean() if len(vals) else np.nan)
            for _, r in here[here["status"] != "ok"].iterrows():
                notes.append(f"- {name}, {d}, seed {r['seed']}: {r['status']} {r['note'] or ''}".rstrip())
        mean = float(np.mean(means)) if means and np.all(np.isfinite(means)) else np.nan
        if full_mean is None:
            full_mean = mean
        delta = "" if name == "full model" or not np.isfinite(mean) else f"{mean - full_mean:+.3f}"
        n_ok = int((runs["status"] == "ok").sum())
        lines.append(
            f"| {name} | {replacement or '–'} | "
            + " | ".join(cells)
            + f" | {C.fmt_num(mean, 3)} | {delta} | {n_ok}/{len(runs)} |"
        )
    return "\n".join(lines + (["", *notes] if notes else []))


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    args = parse_args(argv)
    files = R.find_datasets(Path(args.data_dir or P.default_data_dir()), args.datasets)
    section = args.section or f"{args.method}-ablation"
    csv_path = args.csv or C.REPO_ROOT / "benchmarks" / "results" / f"{section}.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    specs = plan(args, files)
    reused = reuse_rows(args.reuse, specs)
    if reused:  # seed the CSV with them; --resume then skips those runs
        existing = R.done_rows(csv_path, specs) if args.resume else []
        have = {R._key(r) for r in existing}
        with open(csv_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=R.CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(existing + [r for r in reused if R._key(r) not in have])
    logdir = args.log_dir or Path(tempfile.mkdtemp(prefix="sccluster_ablation_"))
    rows = R.run_grid(specs, csv_path, logdir, args.timeout_s, resume=args.resume or bool(reused))
    df = pd.DataFrame(rows, columns=R.CSV_COLUMNS)
    table = ablation_table(df, args.method, [f.stem for f in files])
    if not args.no_markdown:
        rel = csv_path.relative_to(C.REPO_ROOT) if csv_path.is_relative_to(C.REPO_ROOT) else csv_path
        body = "\n".join(
            [
                f"## Ablation: {args.method}",
                "",
                *P.provenance_lines(sys.argv if argv is None else [__file__, *argv]),
                f"- Raw rows: `{rel}`" + (f"; full-model rows reused from `{args.reuse}`" if reused else ""),
                C.commits_line(rows),
                f"- k {args.k_mode}; ARI mean ± std over seeds {', '.join(map(str, args.seeds))}. "
                "Each variant turns one component off and keeps every other setting at its default.",
                "",
                table,
            ]
        )
        C.replace_section(args.markdown, section, body)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
