"""AnnData to streamed mini-batches: raw counts by row chunks, scaled per batch, batch covariates."""

from sccluster._validation import check_counts_block

from ._batches import MIN_BATCH_CELLS, MIN_NEW_BATCH_CELLS, BatchCodes, check_batch_key, read_batches
from ._counts import DEFAULT_CHUNK, Batch, CountSource
from ._scaling import Scaler

__all__ = [
    "DEFAULT_CHUNK",
    "MIN_BATCH_CELLS",
    "MIN_NEW_BATCH_CELLS",
    "Batch",
    "BatchCodes",
    "CountSource",
    "Scaler",
    "check_batch_key",
    "check_counts_block",
    "read_batches",
]
