"""Preprocessing, AnnData to AnnData: QC, size factors, log-normalisation, HVGs, streamed PCA."""

from ._genes import gene_mask, select_genes
from ._pca import pca_embedding
from ._prepare import prepare

__all__ = ["gene_mask", "pca_embedding", "prepare", "select_genes"]
