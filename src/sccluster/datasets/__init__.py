"""Placeholder."""
from ._synthetic import synthetic
