#!/usr/bin/env python
"""Cell-type classification, label transfer, novelty ("unknown") and calibration benchmarks (issue #24).

Examples (each task appends to its CSV and skips rows already there; ``report`` writes the Markdown)::

    python benchmarks/transfer.py classify --seeds 0 1 2
    python benchmarks/transfer.py transfer --seeds 0 1 2
    python benchmarks/transfer.py novelty --seeds 0 1 2
    python benchmarks/transfer.py report

Tasks:

- ``classify`` (the scSiameseClu paper's protocol): each embedding is fitted on all cells of a dataset
  without labels (with ``batch_key="batch"`` where the data have batches); a stratified 5-fold
  cross-validation then trains the calibrated classifier of :class:`sccluster.tl.LabelTransfer` on four
  folds' embedding and labels and predicts the fifth. Accuracy and macro-F1 of the pooled out-of-fold
  predictions. Beside it, the CellTypist recipe (logistic regression on the 2,000 HVGs of the training
  folds, log-normalised to 10,000 counts and z-scored) in the same folds.
- ``transfer``: reference → query pairs (baron_human_pancreas leave-one-donor-out, kang_pbmc_stim
  control → stimulated and donor 101 → 107). :func:`sccluster.tl.transfer_labels` with each embedding
  (``batch_key="batch"``); the baselines are the CellTypist recipe (fitted on the reference only) and a
  15-nearest-neighbour vote on the reference PCA (``sc.tl.ingest``'s idea). Accuracy and macro-F1 over
  all query cells (an ``"unknown"`` call counts as wrong; macro-F1 averages the query's true types), per
  type F1, the share called unknown, and the expected calibration error (15 equal-width bins) of the
  confidence of the best type against whether it is right.
- ``novelty``: one type at a time is removed from the reference (kang_pbmc_stim control → stimulated and
  donor 101 → 107; every type); AUROC of the novelty score (``obs["..._novelty"]``) of the query cells of
  the removed type against the other query cells, and the shares of each called unknown.

Labels: the reference's labels train the classifier (they are inputs here); the query's labels, and the
held-out fold's, only score. No threshold or hyperparameter was set from them (defaults of
``LabelTransfer``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P

PAGE = "docs/benchmarks/transfer.md"
RESULTS = C.REPO_ROOT / "benchmarks" / "results"
CLASSIFY_DATASETS = ("baron_human_pancreas", "kang_pbmc_stim", "pbmc68k_reduced")
#: Embeddings of the classification and transfer tasks: (method, LabelTransfer representation).
EMBEDDINGS = (("bgformer", "encoder"), ("siamese", "encoder"), ("pca", "encoder"),
              ("bgformer", "clustered"), ("siamese", "clustered"))  # fmt: skip
BASELINES = ("celltypist-recipe", "knn-pca")
ECE_BINS = 15
CV_FOLDS = 5
COLUMNS = {
    "classify": ["dataset", "method", "representation", "features", "seed", "n_cells", "accuracy", "macro_f1", "time_s",
                 "git_commit"],
    "transfer": ["pair", "method", "representation", "features", "seed", "n_reference", "n_query", "accuracy", "macro_f1",
                 "pct_unknown", "ece", "accuracy_predicted", "f1_by_type", "time_s", "git_commit"],
    "novelty": ["pair", "held_out", "method", "representation", "features", "seed", "n_held_out", "auroc",
                "unknown_held_out", "unknown_others", "time_s", "git_commit"],
}  # fmt: skip


def load(name: str, data_dir: Path):
    import anndata as ad

    return ad.read_h5ad(data_dir / f"{name}.h5ad")


def pairs(data_dir: Path) -> dict[str, tuple]:
    """``{pair name: (dataset, reference mask, query mask)}`` of the transfer task."""
    out = {}
    baron = load("baron_human_pancreas", data_dir)
    for donor in sorted(baron.obs["batch"].astype(str).unique()):
        q = (baron.obs["batch"].astype(str) == donor).to_numpy()
        out[f"baron: others → {donor}"] = ("baron_human_pancreas", ~q, q)
    kang = load("kang_pbmc_stim", data_dir)
    batch = kang.obs["batch"].astype(str)
    q = batch.str.startswith("stim").to_numpy()
    out["kang: ctrl → stim"] = ("kang_pbmc_stim", ~q, q)
    q = batch.str.endswith("107").to_numpy()
    out["kang: 101 → 107"] = ("kang_pbmc_stim", ~q, q)
    return out


# --------------------------------------------------------------------------- scores
def scores(truth: np.ndarray, labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray) -> dict:
    from sklearn.metrics import f1_score

    types = np.unique(truth)
    per_type = f1_score(truth, labels, labels=types, average=None, zero_division=0)
    return {
        "accuracy": float(np.mean(labels == truth)),
        "macro_f1": float(np.mean(per_type)),
        "pct_unknown": float(100 * np.mean(labels == "unknown")),
        "ece": ece(confidence, predicted == truth),
        "accuracy_predicted": float(np.mean(predicted == truth)),
        "f1_by_type": json.dumps({str(t): round(float(f), 4) for t, f in zip(types, per_type, strict=True)}),
    }


def ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over equal-width confidence bins of |accuracy - confidence| x share."""
    confidence = np.asarray(confidence, dtype=float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.mean() * abs(np.mean(correct[sel]) - np.mean(confidence[sel]))
    return float(total)


# --------------------------------------------------------------------------- baselines
def celltypist_recipe(ref, ref_labels: np.ndarray, query) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression on the reference's 2,000 HVGs, log-normalised to 10,000 counts, z-scored (clipped at 10).

    Returns the predicted labels and the probability of each prediction. Benchmark code: the genes are
    densified (a few thousand cells).
    """
    import scanpy as sc
    from sklearn.linear_model import LogisticRegression

    def lognorm(a):
        a = a.copy()
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
        return a

    r = lognorm(ref)
    sc.pp.highly_variable_genes(r, n_top_genes=min(2000, r.n_vars - 1))
    genes = r.var_names[r.var["highly_variable"].to_numpy()]
    xr = np.asarray(r[:, genes].X.toarray())
    mean, std = xr.mean(axis=0), xr.std(axis=0)
    std[std == 0] = 1
    xq = np.asarray(lognorm(query)[:, genes].X.toarray())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(np.clip((xr - mean) / std, -10, 10), ref_labels)
    proba = lr.predict_proba(np.clip((xq - mean) / std, -10, 10))
    return lr.classes_[proba.argmax(axis=1)], proba.max(axis=1)


def knn_pca(ref, ref_labels: np.ndarray, query, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """15-nearest-neighbour vote on the reference PCA (the query projected with the reference's loadings)."""
    from sklearn.neighbors import KNeighborsClassifier

    from sccluster.models._pca_embedder import PCAEmbedder

    emb = PCAEmbedder(batch_key="batch", random_state=seed).fit(ref)
    knn = KNeighborsClassifier(n_neighbors=15).fit(emb.embedding_, ref_labels)
    proba = knn.predict_proba(emb.transform(query))
    return knn.classes_[proba.argmax(axis=1)], proba.max(axis=1)


# --------------------------------------------------------------------------- tasks
def classify_one(dataset: str, method: str, representation: str, seed: int, data_dir: Path,
                 feature_sets: tuple[str, ...] = ("embedding",)) -> dict[str, dict]:  # fmt: skip
    """``{feature set: row}``: one embedding fitted, then cross-validated with each set of classifier features."""
    from sklearn.model_selection import StratifiedKFold

    from sccluster.tl._classifier import CalibratedClassifier
    from sccluster.tl._features import features
    from sccluster.tl._transfer import LabelTransfer

    adata = load(dataset, data_dir)
    keep = ("batch",) if "batch" in adata.obs else ()
    labels, data = C.counts_only(adata, "cell_type", keep=keep)
    start = time.perf_counter()
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # types with fewer cells than folds
        splits = list(folds.split(np.zeros(len(labels)), labels))
    out = {}

    def row(pred: np.ndarray) -> dict:
        s = scores(labels, pred.astype(str), pred.astype(str), np.ones(len(labels)))
        return {"n_cells": len(labels), "accuracy": s["accuracy"], "macro_f1": s["macro_f1"],
                "time_s": round(time.perf_counter() - start, 1)}  # fmt: skip

    if method in BASELINES:
        pred = np.empty(len(labels), dtype=object)
        for train, test in splits:
            pred[test] = celltypist_recipe(data[train], labels[train], data[test])[0]
        return {"": row(pred)}
    batch_key = keep[0] if keep else None
    lt = LabelTransfer("cell_type", method=method, batch_key=batch_key, representation=representation,
                       random_state=seed)  # fmt: skip
    model = lt._new_model(len(np.unique(labels)), seed)  # k = the number of types, as the paper's protocol
    emb = np.asarray(model.fit(data).embedding_, dtype=np.float32)  # no labels
    for kind in feature_sets:
        x = features(kind, model, data, emb, layer=None, batch_key=batch_key)
        pred = np.empty(len(labels), dtype=object)
        for train, test in splits:
            clf = CalibratedClassifier.fit(x[train], labels[train], seed=seed)
            pred[test] = clf.classes[clf.predict_proba(x[test]).argmax(axis=1)]
        out[kind] = row(pred)
    return out


def transfer_one(pair: tuple, method: str, representation: str, seed: int, data_dir: Path,
                 drop_type: str | None = None, features: str = "embedding") -> tuple[dict, np.ndarray, np.ndarray]:  # fmt: skip
    import sccluster as scc

    dataset, ref_mask, query_mask = pair
    adata = load(dataset, data_dir)
    labels, data = C.counts_only(adata, "cell_type", keep=("batch",))
    ref_mask = ref_mask & (labels != drop_type) if drop_type is not None else ref_mask
    ref, query = data[ref_mask].copy(), data[query_mask].copy()
    ref.obs["cell_type"] = labels[ref_mask]
    truth = labels[query_mask]
    start = time.perf_counter()
    novelty = None
    if method == "celltypist-recipe":
        predicted, confidence = celltypist_recipe(ref, labels[ref_mask], query)
        out = predicted
    elif method == "knn-pca":
        predicted, confidence = knn_pca(ref, labels[ref_mask], query, seed)
        out = predicted
    else:
        scc.tl.transfer_labels(ref, query, label_key="cell_type", method=method, batch_key="batch",
                               representation=representation, features=features,
                               random_state=seed)  # fmt: skip
        out = query.obs["transferred_label"].astype(str).to_numpy()
        predicted = query.obs["transferred_label_predicted"].astype(str).to_numpy()
        confidence = query.obs["transferred_label_confidence"].to_numpy()
        novelty = query.obs["transferred_label_novelty"].to_numpy()
    row = scores(truth, np.asarray(out, dtype=str), np.asarray(predicted, dtype=str), confidence)
    row.update(n_reference=int(ref_mask.sum()), n_query=int(query_mask.sum()),
               time_s=round(time.perf_counter() - start, 1))  # fmt: skip
    return row, truth, (novelty if novelty is not None else np.zeros(len(truth))), out


def novelty_one(
    pair: tuple,
    held_out: str,
    method: str,
    representation: str,
    seed: int,
    data_dir: Path,
    features: str = "embedding",
) -> dict:
    from sklearn.metrics import roc_auc_score

    row, truth, novelty, out = transfer_one(pair, method, representation, seed, data_dir, drop_type=held_out,
                                            features=features)  # fmt: skip
    target = truth == held_out
    unknown = np.asarray(out) == "unknown"
    return {"n_held_out": int(target.sum()), "auroc": float(roc_auc_score(target, novelty)),
            "unknown_held_out": float(unknown[target].mean()), "unknown_others": float(unknown[~target].mean()),
            "time_s": row["time_s"]}  # fmt: skip


def _done(path: Path, keys: list[str]) -> set:
    if not path.is_file():
        return set()
    with open(path, newline="") as fh:
        return {tuple(r[k] for k in keys) for r in csv.DictReader(fh)}


def _upgrade(path: Path, columns: list[str]) -> None:
    """Rewrite a CSV written before a column was added (``features``: ``"embedding"``, the only one then)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames == columns:
            return
        rows = list(reader)
    for r in rows:
        r.setdefault("features", "" if r["method"] in BASELINES else "embedding")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def plan(task: str, args, all_pairs: dict) -> list[dict]:
    """The jobs of a task; a classify job lists the feature sets its one fit serves."""
    embeddings = [e for e in EMBEDDINGS if e[0] in args.methods and e[1] in args.representations]
    feats = tuple(args.features)
    types: dict[str, list[str]] = {}  # cell types of each dataset (novelty), read once
    jobs = []
    for seed in args.seeds:
        if task == "classify":
            for ds in args.datasets or CLASSIFY_DATASETS:
                jobs += [{"dataset": ds, "method": m, "representation": r, "seed": seed, "features": feats}
                         for m, r in embeddings]  # fmt: skip
                if "celltypist-recipe" in args.methods and seed == args.seeds[0]:  # deterministic: once
                    jobs.append({"dataset": ds, "method": "celltypist-recipe", "representation": "", "seed": seed,
                                 "features": ("",)})  # fmt: skip
            continue
        for name, pair in all_pairs.items():
            if task == "novelty" and not name.startswith("kang"):
                continue
            if task == "novelty" and pair[0] not in types:
                types[pair[0]] = sorted(set(load(pair[0], args.data_dir).obs["cell_type"].astype(str)))
            for m, r in embeddings:
                for f in feats:
                    base = {"pair": name, "method": m, "representation": r, "seed": seed, "features": f}
                    jobs += (
                        [base] if task == "transfer" else [{**base, "held_out": t} for t in types[pair[0]]]
                    )
            if task == "transfer":
                jobs += [{"pair": name, "method": b, "representation": "", "seed": seed, "features": ""}
                         for b in BASELINES if b in args.methods and (b == "knn-pca" or seed == args.seeds[0])]  # fmt: skip
    return jobs


def run_task(task: str, args) -> None:
    path = args.csv or RESULTS / f"transfer-{task}.csv"
    keys = {"classify": ["dataset", "method", "representation", "features", "seed"],
            "transfer": ["pair", "method", "representation", "features", "seed"],
            "novelty": ["pair", "held_out", "method", "representation", "features", "seed"]}[task]  # fmt: skip
    _upgrade(path, COLUMNS[task])
    done = _done(path, keys)
    new = not path.is_file() or path.stat().st_size == 0
    commit = P.git_commit()
    all_pairs = {} if task == "classify" else pairs(args.data_dir)
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS[task], extrasaction="ignore")
        if new:
            writer.writeheader()
        for job in plan(task, args, all_pairs):
            if task == "classify":
                todo = tuple(
                    f
                    for f in job["features"]
                    if tuple(str({**job, "features": f}[k]) for k in keys) not in done
                )
                if not todo:
                    continue
                rows = classify_one(job["dataset"], job["method"], job["representation"], job["seed"],
                                    args.data_dir, todo if job["method"] not in BASELINES else ("",))  # fmt: skip
                results = [(f, r) for f, r in rows.items()]
            else:
                if tuple(str(job[k]) for k in keys) in done:
                    continue
                f = job["features"] or "embedding"
                if task == "transfer":
                    row = transfer_one(all_pairs[job["pair"]], job["method"], job["representation"], job["seed"],
                                       args.data_dir, features=f)[0]  # fmt: skip
                else:
                    row = novelty_one(all_pairs[job["pair"]], job["held_out"], job["method"], job["representation"],
                                      job["seed"], args.data_dir, features=f)  # fmt: skip
                results = [(job["features"], row)]
            for f, row in results:
                row.update(job, features=f, git_commit=commit)
                writer.writerow(row)
                fh.flush()
                print(json.dumps({k: row[k] for k in row if k != "f1_by_type"}), flush=True)


# --------------------------------------------------------------------------- report
def _variant(row) -> str:
    rep = row["representation"]
    name = (
        row["method"]
        if not isinstance(rep, str) or not rep or rep == "encoder"
        else f"{row['method']} ({rep})"
    )
    return f"{name} + genes" if row.get("features") == "embedding+genes" else name


def report(args) -> str:
    import pandas as pd

    parts = []
    path = RESULTS / "transfer-classify.csv"
    if path.is_file():
        df = pd.read_csv(path, keep_default_na=False)
        df["variant"] = df.apply(_variant, axis=1)
        lines = ["### Classification: stratified 5-fold cross-validation within each dataset", "",
                 "| embedding | " + " | ".join(f"{d} acc | {d} macro-F1" for d in CLASSIFY_DATASETS) + " | seeds |",
                 "|---|" + "---|---|" * len(CLASSIFY_DATASETS) + "---|"]  # fmt: skip
        for variant, g in df.groupby("variant", sort=False):
            cells = []
            for d in CLASSIFY_DATASETS:
                s = g[g["dataset"] == d]
                cells += [C.fmt_mean_std(s["accuracy"]), C.fmt_mean_std(s["macro_f1"])]
            lines.append(f"| {variant} | " + " | ".join(cells) + f" | {g['seed'].nunique()} |")
        parts.append("\n".join(lines))
    path = RESULTS / "transfer-transfer.csv"
    if path.is_file():
        df = pd.read_csv(path, keep_default_na=False)
        df["variant"] = df.apply(_variant, axis=1)
        lines = ["### Label transfer: mean over the six reference → query pairs (each pair: mean over seeds)", "",
                 "| method | accuracy | macro-F1 | % unknown | ECE | accuracy of best type | seeds |",
                 "|---|---|---|---|---|---|---|"]  # fmt: skip
        per_pair = df.groupby(["variant", "pair"], sort=False)[["accuracy", "macro_f1", "pct_unknown", "ece",
                                                                  "accuracy_predicted"]].mean()  # fmt: skip
        for variant, g in per_pair.groupby(level=0, sort=False):
            seeds = df[df["variant"] == variant]["seed"].nunique()
            lines.append(f"| {variant} | {g['accuracy'].mean():.3f} | {g['macro_f1'].mean():.3f} | "
                         f"{g['pct_unknown'].mean():.1f} | {g['ece'].mean():.3f} | {g['accuracy_predicted'].mean():.3f} "
                         f"| {seeds} |")  # fmt: skip
        lines += [
            "",
            "Per pair (macro-F1, mean ± std over seeds):",
            "",
            "| method | " + " | ".join(df["pair"].unique()) + " |",
            "|---|" + "---|" * df["pair"].nunique(),
        ]
        for variant, g in df.groupby("variant", sort=False):
            lines.append(f"| {variant} | " + " | ".join(C.fmt_mean_std(g[g["pair"] == p]["macro_f1"])
                                                       for p in df["pair"].unique()) + " |")  # fmt: skip
        parts.append("\n".join(lines))
    path = RESULTS / "transfer-novelty.csv"
    if path.is_file():
        df = pd.read_csv(path, keep_default_na=False)
        df["variant"] = df.apply(_variant, axis=1)
        lines = ["### Novelty: one type removed from the reference at a time", "",
                 "| method | pair | held-out types | AUROC | unknown (held-out type) | unknown (others) | seeds |",
                 "|---|---|---|---|---|---|---|"]  # fmt: skip
        for (variant, pair), g in df.groupby(["variant", "pair"], sort=False):
            per_seed = g.groupby("seed")[["auroc", "unknown_held_out", "unknown_others"]].mean()
            lines.append(f"| {variant} | {pair} | {g['held_out'].nunique()} | {C.fmt_mean_std(per_seed['auroc'])} | "
                         f"{C.fmt_mean_std(per_seed['unknown_held_out'])} | {C.fmt_mean_std(per_seed['unknown_others'])} "
                         f"| {g['seed'].nunique()} |")  # fmt: skip
        lines += [
            "",
            "AUROC per held-out type (mean over seeds):",
            "",
            "| method | pair | " + "type: AUROC |",
            "|---|---|---|",
        ]
        for (variant, pair), g in df.groupby(["variant", "pair"], sort=False):
            per = g.groupby("held_out")["auroc"].mean()
            lines.append(
                f"| {variant} | {pair} | " + ", ".join(f"{t} {v:.2f}" for t, v in per.items()) + " |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=["classify", "transfer", "novelty", "report"])
    p.add_argument("--methods", nargs="+", default=["bgformer", "siamese", "pca", *BASELINES])
    p.add_argument("--representations", nargs="+", default=["encoder", "clustered"])
    p.add_argument(
        "--features",
        nargs="+",
        default=["embedding"],
        choices=["embedding", "embedding+genes"],
        help="classifier inputs to run (LabelTransfer's features)",
    )
    p.add_argument("--datasets", nargs="+", default=None, help="classify: default the three labelled sets")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--csv", type=Path, default=None, help="default: benchmarks/results/transfer-<task>.csv")
    p.add_argument("--markdown", type=Path, default=C.REPO_ROOT / PAGE)
    args = p.parse_args(argv)
    args.data_dir = args.data_dir or P.default_data_dir()
    if args.task != "report":
        run_task(args.task, args)
        return 0
    body = "\n".join(P.provenance_lines(sys.argv)) + "\n\n" + report(args)
    C.replace_section(
        args.markdown, "transfer-results", body, intro="# Classification, label transfer and novelty\n"
    )
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
