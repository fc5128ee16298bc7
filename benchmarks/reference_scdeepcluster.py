#!/usr/bin/env python
"""Reference point: scDeepCluster's published recipe, with the final partition reported (no labels).

The `pbmc_4k_top2000` target of the issues (ARI >= 0.78) comes from scDeepCluster's paper and README.
This script asks whether that recipe reaches it on these files when nothing is chosen by the labels.
It re-implements the recipe of the authors' PyTorch code (ttgump/scDeepCluster_pytorch,
``run_scDeepCluster.py`` defaults) on sccluster's streaming data access:

- input: ``log1p(counts / size factor)`` z-scored per gene without clipping (the authors'
  ``normalize``), genes with no count dropped, every other gene of the file kept (``select_genes=0``);
  size factor = library size over the genes kept / its median; with ``--select-genes N`` a file with more
  than N genes (more than ``--select-above M`` genes, when given) keeps its N most variable genes
  (sccluster's Seurat-style selection; the authors' README recommends 2,000 selected genes, their
  script's default keeps all);
- network: encoder genes -> 256 -> 64 (ReLU) -> 32 (linear); decoder 32 -> 64 -> 256 (ReLU) -> ZINB
  mean (exp, clamped to [1e-5, 1e6], times the size factor), dispersion (softplus, clamped to
  [1e-4, 1e4]) and dropout probability (sigmoid); Gaussian noise of sd 2.5 on the input of the
  reconstruction pass;
- pretraining: 300 epochs, batch 256, Adam (amsgrad) at lr 1e-3, ZINB loss;
- clustering: centres from k-means (n_init 20) on the clean embedding; Adadelta (lr 1, rho 0.95) on
  ZINB + KL(P‖Q) with the Student-t Q (alpha 1); P recomputed on every cell once per epoch; training
  stops when fewer than 0.1 % of the labels change between two epochs (at most 2,000 epochs).

The labels reported are the last partition, as the authors' script does; the labels are read only
to set k and to score it afterwards. The partition of the initial k-means is scored too (``init_*``
columns), to show what the clustering stage adds. One fit per (dataset, seed), in this process;
run one invocation per group of datasets to use more cores (``--csv`` each, then ``--from-csv`` on
the concatenation).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _provenance as P
import run as R

COLUMNS = [
    "dataset",
    "seed",
    "n_cells",
    "n_genes",
    "k",
    "ari",
    "nmi",
    "acc",
    "init_ari",
    "init_nmi",
    "init_acc",
    "cluster_epochs",
    "time_s",
    "git_commit",
]
RECIPE = {
    "hidden": (256, 64),
    "latent": 32,
    "sigma": 2.5,
    "batch_size": 256,
    "pretrain_epochs": 300,
    "pretrain_lr": 1e-3,
    "gamma": 1.0,
    "tol": 1e-3,
    "max_epochs": 2000,
    "kmeans_n_init": 20,
}


def build_net(n_genes: int):
    """The recipe's autoencoder: ``encoder(x) -> z``, ``zinb(z, counts, sf)`` (mean ZINB NLL of the counts
    decoded from ``z``) and ``log_q(z)`` (Student-t log assignments to the centres ``mu``)."""
    import torch
    from torch import nn

    h1, h2 = RECIPE["hidden"]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Linear(n_genes, h1),
                nn.ReLU(),
                nn.Linear(h1, h2),
                nn.ReLU(),
                nn.Linear(h2, RECIPE["latent"]),
            )
            self.decoder = nn.Sequential(
                nn.Linear(RECIPE["latent"], h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU()
            )
            self.mean = nn.Linear(h1, n_genes)
            self.disp = nn.Linear(h1, n_genes)
            self.pi = nn.Linear(h1, n_genes)
            self.mu = nn.Parameter(torch.zeros(0, RECIPE["latent"]))

        def zinb(self, z, counts, sf):
            from sccluster.nn._zinb import zinb_nll

            h = self.decoder(z)
            log_mean = self.mean(h).clamp(math.log(1e-5), math.log(1e6)) + torch.log(sf)[:, None]
            disp = nn.functional.softplus(self.disp(h)).clamp(1e-4, 1e4)
            return zinb_nll(counts, log_mean, disp, self.pi(h))

        def log_q(self, z):
            from sccluster.nn._clustering import log_student_t

            return log_student_t(z, self.mu)

    return Net()


def _tensors(batch, scaler):
    import torch

    counts = torch.from_numpy(batch.counts)
    sf = torch.from_numpy(batch.size_factors)
    return scaler.transform_torch(counts, sf), counts, sf


def encode_all(net, source, scaler, chunk: int = 2048) -> np.ndarray:
    import torch

    net.eval()
    with torch.inference_mode():
        z = [net.encoder(_tensors(b, scaler)[0]).numpy() for b in source.iter_batches(chunk)]
    net.train()
    return np.concatenate(z)


def fit_recipe(adata, k: int, seed: int, select_genes: int = 0) -> dict:
    """Fit the recipe on counts-only ``adata``; return the final and the initial labels and the epochs."""
    import torch
    from sklearn.cluster import KMeans

    from sccluster.data import CountSource, Scaler
    from sccluster.nn._clustering import dec_target, kl_clustering_loss
    from sccluster.pp import gene_mask
    from sccluster.pp._stream import size_factors_from_totals

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    full = CountSource(adata, size_factors=np.ones(adata.n_obs))  # every gene, streamed
    keep = sum(np.asarray(block.sum(axis=0)).ravel() for _, _, block in full.iter_chunks()) > 0
    if select_genes and adata.n_vars > select_genes:
        keep &= gene_mask(adata, select_genes)
    genes = list(adata.var_names[keep])
    # the authors select genes first, then normalise: the library size counts the genes kept only
    library = np.concatenate(
        [np.asarray(block[:, keep].sum(axis=1)).ravel() for _, _, block in full.iter_chunks()]
    )
    source = CountSource(adata, genes=genes, size_factors=size_factors_from_totals(library))
    scaler = Scaler.fit(source, max_value=None)
    net = build_net(len(genes))
    bs, sigma = RECIPE["batch_size"], RECIPE["sigma"]

    def noisy_zinb(batch):
        x, counts, sf = _tensors(batch, scaler)
        noise = torch.randn(x.shape, generator=gen) * sigma
        return net.zinb(net.encoder(x + noise), counts, sf), x

    opt = torch.optim.Adam(net.parameters(), lr=RECIPE["pretrain_lr"], amsgrad=True)
    for _ in range(RECIPE["pretrain_epochs"]):
        for batch in source.iter_batches(bs, shuffle=True, rng=rng):
            loss, _ = noisy_zinb(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    z = encode_all(net, source, scaler)
    km = KMeans(k, n_init=RECIPE["kmeans_n_init"], random_state=seed).fit(z)
    init_labels, init_centers = km.labels_.copy(), km.cluster_centers_.copy()
    net.mu = torch.nn.Parameter(torch.tensor(init_centers, dtype=torch.float32))  # a copy: trained in place
    opt = torch.optim.Adadelta(net.parameters(), lr=1.0, rho=0.95)
    last = init_labels
    epochs = 0
    for epoch in range(RECIPE["max_epochs"]):
        with torch.no_grad():
            q = net.log_q(torch.from_numpy(encode_all(net, source, scaler))).exp()
        p_all = dec_target(q)
        labels = q.argmax(dim=1).numpy()
        changed = float(np.mean(labels != last))
        last = labels
        if epoch > 0 and changed < RECIPE["tol"]:
            break
        epochs = epoch + 1
        for batch in source.iter_batches(bs):  # the authors' clustering stage keeps the cell order
            loss_zinb, x = noisy_zinb(batch)
            idx = torch.from_numpy(batch.index)
            kl = kl_clustering_loss(p_all[idx], net.log_q(net.encoder(x)))
            loss = loss_zinb + RECIPE["gamma"] * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {
        "labels": last,
        "init_labels": init_labels,
        "epochs": epochs,
        "n_genes": len(genes),
        "centers": net.mu.detach().numpy().copy(),
        "init_centers": init_centers,
    }


def run_one(path: Path, seed: int, select_genes: int = 0, select_above: int | None = None) -> dict:
    import sccluster as scc
    from sccluster.metrics import evaluate

    scc.settings.verbosity = 1

    C.package_logs_to_stderr()
    truth, adata = C.counts_only(scc.read(path), R.LABEL_KEY)
    k = len(set(truth))
    start = time.perf_counter()
    if select_above is not None and adata.n_vars <= select_above:
        select_genes = 0
    out = fit_recipe(adata, k, seed, select_genes)
    secs = time.perf_counter() - start
    final = evaluate(truth, out["labels"])
    init = evaluate(truth, out["init_labels"])
    return {
        "dataset": path.stem,
        "seed": seed,
        "n_cells": adata.n_obs,
        "n_genes": out["n_genes"],
        "k": k,
        **{m: final[m] for m in ("ari", "nmi", "acc")},
        **{f"init_{m}": init[m] for m in ("ari", "nmi", "acc")},
        "cluster_epochs": out["epochs"],
        "time_s": secs,
        "git_commit": P.git_commit(),
    }


def table(df) -> str:
    lines = [
        "| dataset | cells | genes | k | ARI | NMI | ACC | ARI of the initial k-means | clustering epochs | "
        "time (s) | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, g in df.groupby("dataset", sort=True):
        lines.append(
            f"| {name} | {int(g.n_cells.iloc[0]):,} | {int(g.n_genes.iloc[0]):,} | {int(g.k.iloc[0])} | "
            f"{C.fmt_mean_std(g.ari)} | {C.fmt_mean_std(g.nmi)} | {C.fmt_mean_std(g.acc)} | "
            f"{C.fmt_mean_std(g.init_ari)} | {g.cluster_epochs.mean():.0f} ({g.cluster_epochs.min()}–"
            f"{g.cluster_epochs.max()}) | {g.time_s.mean():.0f} | {len(g)} |"
        )
    means = df.groupby("dataset")[["ari", "nmi", "acc", "init_ari"]].mean().mean()
    lines.append(
        f"| **mean over datasets** |  |  |  | **{means.ari:.3f}** | **{means.nmi:.3f}** | "
        f"**{means.acc:.3f}** | {means.init_ari:.3f} |  |  |  |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["all"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--select-genes",
        type=int,
        default=0,
        metavar="N",
        help="keep the N most variable genes of files with more than N genes (default 0: all)",
    )
    p.add_argument(
        "--select-above",
        type=int,
        default=None,
        metavar="M",
        help="apply --select-genes only to files with more than M genes",
    )
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--from-csv", type=Path, default=None, help="only render the table of this CSV")
    C.add_output_args(p, "reference-scdeepcluster", "docs/benchmarks/experiments.md")
    args = p.parse_args(argv)
    section = args.section or "reference-scdeepcluster"
    if args.from_csv:
        df, csv_path = pd.read_csv(args.from_csv), args.from_csv
    else:
        files = R.find_datasets(Path(args.data_dir or P.default_data_dir()), args.datasets)
        csv_path = args.csv or C.REPO_ROOT / "benchmarks" / "results" / f"{section}.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        for seed in args.seeds:
            for f in files:
                rows.append(run_one(f, seed, args.select_genes, args.select_above))
                r = rows[-1]
                print(
                    f"{f.stem} seed {seed}: ARI {r['ari']:.3f} (k-means init {r['init_ari']:.3f}), "
                    f"{r['cluster_epochs']} clustering epochs, {r['time_s']:.0f} s",
                    file=sys.stderr,
                )
                pd.DataFrame(rows, columns=COLUMNS).to_csv(csv_path, index=False)
        df = pd.DataFrame(rows, columns=COLUMNS)
    text = table(df)
    if not args.no_markdown:
        body = "\n".join(
            [
                "## Reference: scDeepCluster's published recipe, last partition (no labels)",
                "",
                *P.provenance_lines(sys.argv if argv is None else [__file__, *argv]),
                f"- Raw rows: `{csv_path}`",
                C.commits_line(df.to_dict("records")),
                "- k given; mean ± std over seeds.",
                "",
                text,
            ]
        )
        C.replace_section(args.markdown, section, body)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
