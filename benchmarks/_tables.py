"""Aggregation and Markdown tables for ``run.py`` (per-run rows) and ``scale.py`` (scale study)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import fmt_mean_std, fmt_num

METRICS = ("ari", "nmi", "acc")
KEYS = ["method", "k_mode", "dataset"]


def _ordered(df: pd.DataFrame, col: str) -> list:
    return list(dict.fromkeys(df[col].tolist()))


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, k_mode, dataset) from the per-run rows of ``run.py``.

    Scores are over the runs with ``status == "ok"``. Columns: the keys, ``n_cells``, ``true_k``,
    ``n_ok``, ``n_runs``, ``<metric>_mean`` / ``_std`` / ``_values`` for ARI, NMI, ACC,
    ``k_min`` / ``k_max`` / ``k_mean``, ``time_mean``, ``rss_max``, ``status`` (``ok``, ``na`` when
    every run was not applicable, else the failures, e.g. ``timeout x2``) and ``note``.
    Groups keep the order in which they first appear.
    """
    out = []
    runs = runs.copy()
    for col in ["seed", "n_cells", "true_k", "k_found", *METRICS, "time_s", "peak_rss_mb"]:
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    for key, grp in runs.groupby(KEYS, sort=False):
        ok = grp[grp["status"] == "ok"]
        bad = grp[~grp["status"].isin(["ok", "na"])]
        row = dict(zip(KEYS, key, strict=True))
        row.update(
            n_cells=grp["n_cells"].max(),
            true_k=grp["true_k"].max(),
            n_ok=len(ok),
            n_runs=len(grp),
            k_min=ok["k_found"].min(),
            k_max=ok["k_found"].max(),
            k_mean=ok["k_found"].mean(),
            time_mean=ok["time_s"].mean(),
            rss_max=grp["peak_rss_mb"].max(),
        )
        for m in METRICS:
            vals = ok[m].to_numpy(dtype=float)
            row[f"{m}_values"] = vals.tolist()
            row[f"{m}_mean"] = float(vals.mean()) if vals.size else np.nan
            row[f"{m}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else np.nan
        if len(grp) and (grp["status"] == "na").all():
            row["status"] = "na"
        elif len(bad):
            row["status"] = ", ".join(f"{s} x{n}" for s, n in bad["status"].value_counts().items())
        else:
            row["status"] = "ok"
        notes = grp.loc[grp["status"] != "ok", "note"].dropna().astype(str)
        row["note"] = notes.iloc[0] if len(notes) else ""
        out.append(row)
    return pd.DataFrame(out)


def dataset_means(agg: pd.DataFrame) -> pd.DataFrame:
    """Per (method, k_mode): mean over datasets of the per-dataset mean ARI / NMI / ACC.

    ``n_datasets`` counts the datasets with at least one successful run, ``n_total`` all datasets
    that were run (not-applicable ones excluded).
    """
    rows = []
    agg = agg[agg["status"] != "na"]
    for (method, k_mode), grp in agg.groupby(["method", "k_mode"], sort=False):
        done = grp[grp["n_ok"] > 0]
        row = {"method": method, "k_mode": k_mode, "n_datasets": len(done), "n_total": len(grp)}
        for m in METRICS:
            row[m] = float(done[f"{m}_mean"].mean()) if len(done) else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["method", "k_mode", "n_datasets", "n_total", *METRICS])


def _fmt_k(k_min, k_max, k_mean) -> str:
    """The number of clusters found: the value when every run agrees, else the mean and the range."""
    lo, hi = int(k_min), int(k_max)
    return f"{lo}" if lo == hi else f"{k_mean:.1f} ({lo}–{hi})"


def _k_found(row) -> str:
    if not row["n_ok"]:
        return "–"
    return f"{_fmt_k(row['k_min'], row['k_max'], row['k_mean'])} / {int(row['true_k'])}"


def markdown_table(agg: pd.DataFrame) -> str:
    """The results table of ``run.py``: one line per (method, k, dataset), a mean row per (method, k).

    ARI / NMI / ACC are ``mean ± std`` over seeds (sample std), k found is the value (or mean and
    min–max) against the true k, time is the mean seconds, peak RSS the largest MB over seeds.
    Not-applicable combinations and failures are listed under the table.
    """
    head = "| method | k | dataset | cells | ARI | NMI | ACC | k found / true | time (s) | peak RSS (MB) | runs ok |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    means = dataset_means(agg)
    notes = []
    for (method, k_mode), grp in agg.groupby(["method", "k_mode"], sort=False):
        if (grp["status"] == "na").all():
            notes.append(f"- {method}, k {k_mode}: not applicable ({grp['note'].iloc[0]})")
            continue
        for _, r in grp.iterrows():
            cells = [method, k_mode, r["dataset"], fmt_num(r["n_cells"], 0)]
            cells += [fmt_mean_std(r[f"{m}_values"]) for m in METRICS]
            cells += [
                _k_found(r),
                fmt_num(r["time_mean"], 1),
                fmt_num(r["rss_max"], 0),
                f"{r['n_ok']}/{r['n_runs']}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
            if r["status"] not in ("ok", "na"):
                notes.append(f"- {method}, k {k_mode}, {r['dataset']}: {r['status']}: {r['note']}")
        mr = means[(means["method"] == method) & (means["k_mode"] == k_mode)].iloc[0]
        label = "**mean over datasets**"
        if mr["n_datasets"] < mr["n_total"]:
            label += f" ({mr['n_datasets']} of {mr['n_total']})"
        cells = [method, k_mode, label, ""] + [f"**{fmt_num(mr[m], 3)}**" for m in METRICS] + ["", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- scale study
def scale_ratios(
    results: pd.DataFrame, method_pipelines: str | list[str], scanpy_pipeline: str | list[str] = "scanpy"
) -> pd.DataFrame:
    """Time ratios of the scale study (of the mean times over seeds).

    ``results`` has columns ``size``, ``pipeline``, ``time_s``, ``status``. Returns rows
    ``(kind, pipeline, size, ratio)``: ``t(method)/t(reference)`` for each of ``method_pipelines``
    and each reference pipeline in ``scanpy_pipeline`` at each size where both finished, and
    for each pipeline ``t(size)/t(previous size)`` between consecutive sizes where both finished
    (with ``size`` = the larger size; cost linear in cells gives a ratio close to the size ratio).
    """
    ok = results[results["status"] == "ok"]
    t = ok.pivot_table(index="size", columns="pipeline", values="time_s", aggfunc="mean")
    rows = []
    if isinstance(method_pipelines, str):
        method_pipelines = [method_pipelines]
    references = [scanpy_pipeline] if isinstance(scanpy_pipeline, str) else list(scanpy_pipeline)
    for method_pipeline in method_pipelines:
        for reference in references:
            if method_pipeline not in t or reference not in t:
                continue
            for size, r in t.iterrows():
                if np.isfinite(r[method_pipeline]) and np.isfinite(r[reference]):
                    rows.append(
                        {
                            "kind": f"t({method_pipeline})/t({reference})",
                            "pipeline": method_pipeline,
                            "size": int(size),
                            "ratio": r[method_pipeline] / r[reference],
                        }
                    )
    sizes = sorted(results["size"].unique())
    for pipe in _ordered(results, "pipeline"):
        for small, big in zip(sizes[:-1], sizes[1:], strict=True):
            if pipe in t and small in t.index and big in t.index:
                a, b = t.loc[small, pipe], t.loc[big, pipe]
                if np.isfinite(a) and np.isfinite(b):
                    rows.append(
                        {
                            "kind": f"t({_size(big)})/t({_size(small)})",
                            "pipeline": pipe,
                            "size": int(big),
                            "ratio": b / a,
                        }
                    )
    return pd.DataFrame(rows, columns=["kind", "pipeline", "size", "ratio"])


def _size(n) -> str:
    n = int(n)
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def scale_ari_changes(results: pd.DataFrame) -> pd.DataFrame:
    """Per pipeline, the mean ARI at each larger size minus the mean ARI at the smallest size.

    Rows ``(pipeline, size, base_size, delta)`` over the runs that finished (``status == "ok"``).
    """
    ok = results[results["status"] == "ok"]
    ari = ok.pivot_table(index="size", columns="pipeline", values="ari", aggfunc="mean")
    rows = []
    for pipe in _ordered(results, "pipeline"):
        if pipe not in ari:
            continue
        col = ari[pipe].dropna()
        if len(col) < 2:
            continue
        base = col.index.min()
        for size, value in col.items():
            if size != base:
                rows.append(
                    {"pipeline": pipe, "size": int(size), "base_size": int(base), "delta": value - col[base]}
                )
    return pd.DataFrame(rows, columns=["pipeline", "size", "base_size", "delta"])


def _scale_status(grp: pd.DataFrame) -> str:
    bad = grp[grp["status"] != "ok"]
    if not len(bad):
        return "ok"
    parts = []
    for _, r in bad.iterrows():
        step = r.get("last_step")
        parts.append(
            f"{r['status']}, after `{step}`"
            if isinstance(step, str) and step
            else f"{r['status']}, before any step"
        )
    failed = "; ".join(dict.fromkeys(parts))
    return failed if len(bad) == len(grp) else f"{len(grp) - len(bad)}/{len(grp)} ok; {failed}"


def scale_table(results: pd.DataFrame, ratios: pd.DataFrame) -> str:
    """Markdown of the scale study: one line per (size, pipeline), then time ratios and ARI changes.

    ``results`` has one row per run, columns ``size``, ``pipeline``, ``seed``, ``time_s``,
    ``peak_rss_mb``, ``ari``, ``k_found``, ``status``, ``last_step``, ``note``. Time and ARI are
    ``mean ± std`` over the seeds that finished (the value alone for one), peak RSS the largest over
    seeds, k found the value or mean and range.
    """
    results = results.copy()
    for col in ("size", "time_s", "peak_rss_mb", "ari", "k_found"):
        results[col] = pd.to_numeric(results[col], errors="coerce")
    if "seed" not in results:
        results["seed"] = 0
    results = results.sort_values("size", kind="stable")  # sizes in order; pipelines as they first appear
    lines = [
        "| cells | pipeline | seeds | wall time (s) | peak RSS (MB) | ARI | k found | status / last step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (size, pipe), grp in results.groupby(["size", "pipeline"], sort=False):
        ok = grp[grp["status"] == "ok"]
        k = ok["k_found"].dropna()
        k_txt = _fmt_k(k.min(), k.max(), k.mean()) if len(k) else "–"
        cells = [
            f"{int(size):,}",
            str(pipe),
            ", ".join(str(v) for v in sorted(int(v) for v in grp["seed"])),
            fmt_mean_std(ok["time_s"], 1),
            fmt_num(grp["peak_rss_mb"].max(), 0),
            fmt_mean_std(ok["ari"], 3),
            k_txt,
            _scale_status(grp),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"- {int(r['size']):,} cells, {r['pipeline']}, seed {int(r['seed'])}: {r['note']}"
        for _, r in results.iterrows()
        if r["status"] != "ok" and isinstance(r.get("note"), str) and r.get("note")
    ]
    lines += ["", *notes] if notes else []
    if len(ratios):
        lines += ["", "| time ratio (means over seeds) | pipeline | cells | value |", "|---|---|---|---|"]
        for _, r in ratios.iterrows():
            lines.append(f"| {r['kind']} | {r['pipeline']} | {int(r['size']):,} | {r['ratio']:.2f} |")
    changes = scale_ari_changes(results)
    if len(changes):
        lines += ["", "| ARI change (means over seeds) | pipeline | value |", "|---|---|---|"]
        for _, r in changes.iterrows():
            kind = f"ARI({_size(r['size'])}) − ARI({_size(r['base_size'])})"
            lines.append(f"| {kind} | {r['pipeline']} | {r['delta']:+.3f} |")
    return "\n".join(lines)
