"""Placeholder (being written)."""
from ._base import ClusterModel
class LeidenBaseline(ClusterModel):
    name = "leiden"
class KMeansBaseline(ClusterModel):
    name = "kmeans"
