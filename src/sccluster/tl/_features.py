"""What the label-transfer classifier reads: the embedding alone, or the embedding beside the model's input genes.

The genes are the embedding model's own input: its highly variable genes, log-normalised with the cell's size
factor and z-scored (per batch with ``batch_key``) by the model's scaler, clipped as the model clips them.
They are produced by row chunks, so no cells × genes matrix of a whole query is ever held.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from sccluster.data._batches import source_for_new_cells

#: The classifier's inputs (see :class:`sccluster.tl.LabelTransfer`).
FEATURES = ("embedding", "embedding+genes")
#: Cells per chunk of gene features.
CHUNK = 4096


def iter_features(
    kind: str, model, adata, embedding: np.ndarray, *, layer: str | None, batch_key: str | None, chunk: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """``(rows, features)`` of the cells of ``adata`` by chunks, in order; ``embedding`` holds their embedding.

    ``"embedding"``: one chunk, the embedding itself. ``"embedding+genes"``: the embedding's columns
    followed by the scaled expression of ``model.genes_`` (float32), ``chunk`` cells at a time (default
    :data:`CHUNK`).
    """
    embedding = np.asarray(embedding, dtype=np.float32)
    if kind == "embedding":
        yield np.arange(embedding.shape[0]), embedding
        return
    source, scaler = source_for_new_cells(
        adata, genes=model.genes_, layer=layer, reference_total=model.reference_total_, scaler=model.scaler_,
        batch_key=batch_key, training_batches=getattr(model, "batches_", None),
    )  # fmt: skip
    for batch in source.iter_batches(chunk or CHUNK):
        genes = scaler.transform(batch.counts, batch.size_factors, batch.batch_codes)
        yield batch.index, np.hstack([embedding[batch.index], genes])


def features(
    kind: str, model, adata, embedding: np.ndarray, *, layer: str | None, batch_key: str | None
) -> np.ndarray:
    """All the features of the cells of ``adata`` at once (for the at most a few ten thousand cells a fit reads)."""
    parts = list(iter_features(kind, model, adata, embedding, layer=layer, batch_key=batch_key))
    return parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
