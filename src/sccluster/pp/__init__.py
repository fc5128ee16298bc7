"""Preprocessing, AnnData to AnnData: QC, size factors, log-normalisation, HVGs, streamed PCA."""

from ._genes import gene_mask, select_genes
from ._pca import fit_subsample_pca, pca_embedding
from ._prepare import prepare

__all__ = ["fit_subsample_pca", "gene_mask", "pca_embedding", "prepare", "select_genes"]
