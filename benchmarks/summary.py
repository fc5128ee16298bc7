"""Summary tables over the per-run CSVs of ``run.py``: one line per method and k mode, and ARI per dataset.

Reads finished CSVs only (runs nothing). The overview gives, per (method, k mode), the mean over
datasets of the per-dataset mean ARI and NMI, the spread of that mean across seeds (for each seed the
mean over datasets, then the sample std over seeds), how far the number of clusters found is from the
true k, and the median time per run. The per-dataset table gives the mean ARI of each dataset and the
deep models' difference to the baseline with the best mean in the same k mode.

    python benchmarks/summary.py benchmarks/results/baselines.csv benchmarks/results/bgformer.csv \
        benchmarks/results/siamese.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import variant_labels

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CSVS = [RESULTS / "baselines.csv", RESULTS / "bgformer.csv", RESULTS / "siamese.csv"]
#: Rows the user table adds to the default CSVs: the peer, and the consensus over seeds (benchmarks/consensus.py).
EXTRA_CSVS = [RESULTS / "scvi.csv", RESULTS / "scvi-seed2.csv", RESULTS / "consensus.csv"]
#: The dataset whose k-auto runs give a time at 4k cells for a method that timing-4k.csv lacks.
TIMING_DATASET = "pbmc_4k_top2000"
TIMING_CSV = RESULTS / "timing-4k.csv"
SCALE_CSVS = [RESULTS / "scale-bgformer.csv", RESULTS / "scale-siamese.csv", RESULTS / "scale-baselines.csv"]
BASELINES = ("leiden", "kmeans")
#: Rows of the user table: (label, variant with k given, variant with k auto, scale-study pipeline).
USER_ROWS = [
    ("**siamese** (default)", "siamese", "siamese", "sccluster siamese"),
    ("bgformer", "bgformer", "bgformer", "sccluster bgformer"),
    ("leiden, resolution by stability", "leiden", "leiden", "sccluster leiden"),
    ("leiden, resolution 1.0 (scanpy's default)", "leiden", "leiden (resolution=1.0)", "scanpy (no scale)"),
    ("kmeans on PCA, k by silhouette", "kmeans", "kmeans", "sccluster kmeans"),
    ("siamese, consensus of 3 seeds (`n_seeds=3`)", "siamese (n_seeds=3)", "siamese (n_seeds=3)", None),
    ("bgformer, consensus of 3 seeds (`n_seeds=3`)", "bgformer (n_seeds=3)", "bgformer (n_seeds=3)", None),
    ("scvi-tools SCVI + Leiden (peer)", "scvi", "scvi", None),
]


def load_runs(paths: list[Path]) -> pd.DataFrame:
    """The successful runs of the CSVs, with ``variant`` = method plus its non-default parameters."""
    runs = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    runs = runs[runs["status"] == "ok"].copy()
    runs["variant"] = variant_labels(runs)
    for col in ["seed", "true_k", "k_found", "ari", "nmi", "time_s"]:
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    return runs


def overview(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, k mode) over the datasets every variant of that k mode has."""
    rows = []
    for k_mode, by_k in runs.groupby("k_mode", sort=False):
        shared = set.intersection(*(set(g["dataset"]) for _, g in by_k.groupby("variant")))
        by_k = by_k[by_k["dataset"].isin(shared)]
        for variant, g in by_k.groupby("variant", sort=False):
            per_seed = g.groupby("seed")["ari"].mean()
            rows.append({
                "variant": variant, "method": g["method"].iloc[0], "k_mode": k_mode, "datasets": len(shared),
                "seeds": int(g.groupby("dataset")["seed"].nunique().min()),
                "ari": g.groupby("dataset")["ari"].mean().mean(),
                "ari_seed_std": per_seed.std(ddof=1) if len(per_seed) > 1 else np.nan,
                "nmi": g.groupby("dataset")["nmi"].mean().mean(),
                "k_off": (g["k_found"] - g["true_k"]).abs().groupby(g["dataset"]).mean().mean(),
                "time_median": g["time_s"].median(),
            })  # fmt: skip
    return pd.DataFrame(rows)


def overview_markdown(table: pd.DataFrame) -> str:
    head = "| method | k | datasets × seeds | ARI (mean ± std over seeds) | NMI | mean \\|k found − true k\\| | median time per run (s) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for _, r in table.sort_values(["k_mode", "ari"], ascending=[False, False]).iterrows():
        k_off = "–" if r["k_mode"] == "given" else f"{r['k_off']:.1f}"
        lines.append(
            f"| {r['variant']} | {r['k_mode']} | {r['datasets']} × {r['seeds']} | {r['ari']:.3f} ± {r['ari_seed_std']:.3f} "
            f"| {r['nmi']:.3f} | {k_off} | {r['time_median']:.1f} |"
        )
    return "\n".join(lines)


def per_dataset_markdown(runs: pd.DataFrame, k_mode: str) -> str:
    """Mean ARI per dataset (columns: variants), and each deep model's difference to the baseline with
    the best mean over datasets in that k mode (one fixed method, not a per-dataset pick)."""
    g = runs[runs["k_mode"] == k_mode]
    table = g.pivot_table(index="dataset", columns="variant", values="ari", aggfunc="mean", sort=False)
    base_cols = [c for c in table.columns if c.split(" ")[0] in BASELINES]
    deep_cols = [c for c in table.columns if c not in base_cols]
    bar = table[base_cols].mean().idxmax()
    head = ["dataset", *table.columns, *(f"{c} − {bar}" for c in deep_cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for dataset, r in table.iterrows():
        cells = [dataset, *(f"{v:.3f}" for v in r), *(f"{r[c] - r[bar]:+.3f}" for c in deep_cols)]
        lines.append("| " + " | ".join(cells) + " |")
    mean = table.mean()
    cells = [
        "**mean**",
        *(f"**{v:.3f}**" for v in mean),
        *(f"**{mean[c] - mean[bar]:+.3f}**" for c in deep_cols),
    ]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _time_mem(rows: pd.DataFrame) -> tuple[str, str]:
    """``("mean ± std s", "max MB")`` of finished runs, or dashes."""
    if rows.empty or (rows := rows[rows["status"] == "ok"]).empty:
        return "–", "–"
    t = pd.to_numeric(rows["time_s"])
    spread = f" ± {t.std(ddof=1):.0f}" if len(t) > 1 else ""
    return f"{t.mean():.0f}{spread} s", f"{pd.to_numeric(rows['peak_rss_mb']).max() / 1024:.1f} GB"


def user_table(runs: pd.DataFrame, timing: pd.DataFrame | None, scale: pd.DataFrame | None) -> str:
    """The table of BENCHMARKS.md: quality over the nine datasets, time and memory at ~4k and at 1M cells."""
    coverage = runs.groupby(["variant", "k_mode"])["dataset"].nunique()
    incomplete = coverage[coverage < runs["dataset"].nunique()]
    if len(incomplete):  # left out rather than shrinking every method's mean to the datasets they share
        print(f"left out, not on every dataset: {sorted(set(incomplete.index))}", file=sys.stderr)
        keep = ~runs.set_index(["variant", "k_mode"]).index.isin(incomplete.index)
        runs = runs[keep]
    table = overview(runs).set_index(["variant", "k_mode"])
    head = ("| method | ARI, k given | ARI, k auto | k auto: mean \\|k found − true\\| | time, 4k cells | peak memory, 4k "
            "| time, 1M cells | peak memory, 1M |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for label, given, auto, pipeline in USER_ROWS:
        cells = [label]
        for variant, k_mode in ((given, "given"), (auto, "auto")):
            r = table.loc[(variant, k_mode)] if (variant, k_mode) in table.index else None
            cells.append("–" if r is None else f"{r['ari']:.3f} ± {r['ari_seed_std']:.3f}")
        r = table.loc[(auto, "auto")] if (auto, "auto") in table.index else None
        cells.append("–" if r is None else f"{r['k_off']:.1f}")
        small = pd.DataFrame() if timing is None else timing[timing["variant"] == auto]
        if small.empty:  # not timed alone: its quality runs on the 4k dataset (marked *)
            small = runs[
                (runs["variant"] == auto) & (runs["dataset"] == TIMING_DATASET) & (runs["k_mode"] == "auto")
            ]
            cells += [f"{c}*" if c != "–" else c for c in _time_mem(small)]
        else:
            cells += _time_mem(small)
        big = (
            pd.DataFrame()
            if scale is None
            else scale[(scale["pipeline"] == pipeline) & (scale["n_cells"] == 1_000_000)]
        )
        cells += _time_mem(big) if len(big) else ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csvs", nargs="*", type=Path, default=DEFAULT_CSVS)
    p.add_argument("--per-dataset", choices=["given", "auto"], action="append", default=[],
                   help="also print the ARI per dataset for this k mode (repeatable)")  # fmt: skip
    p.add_argument("--user-table", action="store_true",
                   help=f"print BENCHMARKS.md's table instead (also reads {TIMING_CSV.name} and the scale CSVs)")  # fmt: skip
    args = p.parse_args(argv)
    if args.user_table and args.csvs == DEFAULT_CSVS:
        args.csvs = DEFAULT_CSVS + [f for f in EXTRA_CSVS if f.exists()]
    runs = load_runs(args.csvs)
    if args.user_table:
        timing = load_runs([TIMING_CSV]) if TIMING_CSV.exists() else None
        found = [f for f in SCALE_CSVS if f.exists()]
        scale = pd.concat([pd.read_csv(f) for f in found], ignore_index=True) if found else None
        if scale is not None:  # the scanpy rows appear in each scale CSV: keep one copy of each run
            scale = scale.drop_duplicates(["pipeline", "n_cells", "seed", "time_s"])
        print(user_table(runs, timing, scale))
        return 0
    print(overview_markdown(overview(runs)))
    for k_mode in args.per_dataset:
        print(f"\nARI per dataset, k {k_mode} (mean over seeds):\n")
        print(per_dataset_markdown(runs, k_mode))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
