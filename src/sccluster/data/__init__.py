"""AnnData to streamed mini-batches: raw counts by row chunks, scaled per batch."""

from .._validation import check_counts_block
from ._counts import DEFAULT_CHUNK, Batch, CountSource
from ._scaling import Scaler

__all__ = ["DEFAULT_CHUNK", "Batch", "CountSource", "Scaler", "check_counts_block"]
