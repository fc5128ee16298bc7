"""Datasets: the bundled demo, the benchmark files, synthetic data and upsampled scale data.

- :func:`demo` / :func:`demo_path`: 3,000 labelled PBMC 4k cells shipped with the package.
- :func:`load` / :func:`list_datasets`: the ``.h5ad`` files in ``settings.datasetdir`` by name, or any path.
- :func:`synthetic`: negative-binomial counts with planted clusters.
- :func:`upsample`: a large realistic dataset from a labelled one (pairs summed, binomially thinned);
  :func:`upsample_to_h5ad` writes it to a file chunk by chunk, for datasets larger than memory.
"""

from __future__ import annotations

from ._catalog import demo, demo_path, list_datasets, load
from ._synthetic import synthetic
from ._upsample import upsample, upsample_to_h5ad

__all__ = ["demo", "demo_path", "list_datasets", "load", "synthetic", "upsample", "upsample_to_h5ad"]
