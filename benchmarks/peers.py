"""Peer methods for the benchmark harness, outside the package: what users would pick instead of sccluster.

``scvi``: scvi-tools' SCVI → neighbours → Leiden, the pipeline of the scvi-tools tutorials. SCVI is trained with
its own defaults (``max_epochs = min(round(20000 / n_cells * 400), 400)``, early stopping off) on the raw counts of
the same highly variable genes the other methods use; the latent representation (10 dimensions) goes to the same
kNN graph and Leiden code as the ``leiden`` baseline: resolution 1.0 with k auto (scanpy's default), bisection on the
resolution with k given. With ``batch_key`` the batch is SCVI's covariate and the graph is the plain kNN graph of
the latent space, as in the tutorials.

scvi-tools is not a dependency of sccluster: install it in its own environment with torch pinned first::

    python3.11 -m venv ../venv-peers
    ../venv-peers/bin/pip install torch==2.13.0
    ../venv-peers/bin/pip install scvi-tools 'pynndescent<0.7' igraph leidenalg loompy
    PYTHONPATH=src ../venv-peers/bin/python benchmarks/run.py --methods scvi --seeds 0 1 2 --k both \
        --csv benchmarks/results/scvi.csv --resume --no-markdown

(or ``pip install -e ".[peers]"`` into that environment instead of ``PYTHONPATH=src``).

With ``SCCLUSTER_PEER_CACHE=DIR`` the SCVI latent of each training is kept in ``DIR``: the run with the other k mode
of the same dataset and seed (SCVI never sees k) reuses it instead of training the same model again, and the
harness adds the reused training's time to that run's ``time_s`` and says so in its ``note``. It halves the cost of
``--k both``.

``run.py`` looks a method up here when sccluster does not register it (:func:`method_class`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("sccluster.benchmarks.peers")


def _scvi_leiden_class():
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from sccluster._utils import atomic_path
    from sccluster.data import read_batches
    from sccluster.models import LeidenBaseline
    from sccluster.pp import select_genes

    class SCVILeiden(LeidenBaseline):
        """SCVI latent space → kNN graph → Leiden (see the module docstring)."""

        name = "scvi"

        def __init__(
            self,
            n_clusters: int | None = None,
            *,
            resolution: float | str = 1.0,
            n_neighbors: int = 15,
            n_top_genes: int = 2000,
            n_latent: int = 10,
            max_epochs: int | None = None,
            batch_key: str | None = None,
            random_state: int | None = 0,
        ) -> None:
            # the graph is SCVI's own concern with a batch: the baseline's balanced graph stays off
            super().__init__(n_clusters, resolution=resolution, n_neighbors=n_neighbors, n_top_genes=n_top_genes,
                             random_state=random_state)  # fmt: skip
            self.n_latent = n_latent
            self.max_epochs = max_epochs
            self.scvi_batch_key = batch_key

        def _embed(self, adata, *, layer, batches) -> np.ndarray:
            import scvi

            genes = select_genes(adata, self.n_top_genes, layer=layer)
            src = adata[:, genes]
            counts = src.layers["counts"] if layer is None and "counts" in src.layers else (
                src.X if layer in (None, "X") else src.layers[layer])  # fmt: skip
            obs = pd.DataFrame(index=adata.obs_names.copy())
            if self.scvi_batch_key is not None:
                codes = read_batches(adata, self.scvi_batch_key)
                obs["batch"] = np.asarray(codes.categories, dtype=object)[codes.codes]
            data = ad.AnnData(
                X=sp.csr_matrix(counts, copy=True), obs=obs, var=pd.DataFrame(index=list(genes))
            )
            self.scvi_version_ = scvi.__version__
            cached = _latent_cache(data, self.seed_, self.n_latent, self.max_epochs, scvi.__version__)
            if (
                cached is not None and cached.is_file()
            ):  # the same SCVI fit, trained by the run with the other k
                saved = np.load(cached)
                self.epochs_, self.reused_time_s_ = int(saved["epochs"]), float(saved["train_s"])
                logger.info(
                    "scvi %s: latent of %s reused (%d epochs)", scvi.__version__, cached.name, self.epochs_
                )
                return saved["latent"]
            start = time.perf_counter()
            scvi.settings.seed = self.seed_
            scvi.model.SCVI.setup_anndata(data, batch_key="batch" if self.scvi_batch_key else None)
            model = scvi.model.SCVI(data, n_latent=self.n_latent)
            model.train(max_epochs=self.max_epochs, accelerator="cpu", enable_progress_bar=False)
            self.epochs_ = int(model.history["elbo_train"].shape[0])
            logger.info("scvi %s: %d epochs", scvi.__version__, self.epochs_)
            latent = np.asarray(model.get_latent_representation(), dtype=np.float32)
            if cached is not None:
                train_s = time.perf_counter() - start
                with atomic_path(cached) as tmp, open(tmp, "wb") as f:
                    np.savez(f, latent=latent, epochs=self.epochs_, train_s=train_s)
            return latent

    return SCVILeiden


def _latent_cache(data, seed: int, n_latent: int, max_epochs, version: str) -> Path | None:
    """Where the SCVI latent of exactly this training is kept, when ``SCCLUSTER_PEER_CACHE`` names a folder.

    The key hashes everything the training sees (counts, genes, batches, seed, latent size, epochs, scvi-tools'
    version), so only a run with the other k mode of the same data and seed finds it: SCVI never sees k.
    """
    folder = os.environ.get("SCCLUSTER_PEER_CACHE")
    if not folder:
        return None
    digest = hashlib.sha1()
    for array in (data.X.data, data.X.indices, data.X.indptr):
        digest.update(np.ascontiguousarray(array).tobytes())
    batches = data.obs["batch"].astype(str).tolist() if "batch" in data.obs else []
    digest.update(
        repr((data.shape, list(data.var_names), batches, seed, n_latent, max_epochs, version)).encode()
    )
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / f"scvi-{digest.hexdigest()[:20]}.npz"


PEERS = {"scvi": _scvi_leiden_class}


def method_class(name: str):
    """The model class of ``name``: sccluster's registry first, then the peers here."""
    from sccluster.models import available_methods, get_model_class

    if name in available_methods() or name not in PEERS:
        return get_model_class(name)  # its error names the registered methods
    return PEERS[name]()
