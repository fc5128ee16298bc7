"""Shared fixtures: synthetic planted-cluster data built once, handed out as copies."""

from __future__ import annotations

import os

import pytest

# Test matrices are small: one BLAS/OpenMP/torch thread avoids oversubscription stalls (a 600 x 200 SVD
# took ~7 s instead of 0.02 s with two threads on a loaded 2-core machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="session")
def _synthetic_base():
    from sccluster.datasets import synthetic

    return synthetic(n_cells=600, n_genes=200, n_clusters=4, random_state=0)


@pytest.fixture
def synthetic_adata(_synthetic_base):
    """600 cells x 200 genes, 4 planted NB clusters in obs['cell_type'], raw counts in X (CSR)."""
    return _synthetic_base.copy()


@pytest.fixture(scope="session")
def _demo_base():
    from sccluster.datasets import demo

    return demo()


@pytest.fixture
def demo_adata(_demo_base):
    """The bundled real demo subset (raw counts, labels in obs['cell_type'])."""
    return _demo_base.copy()


@pytest.fixture(scope="module")
def warnings_only():
    """``settings.verbosity = 1`` (warnings and errors only) for a module, restored afterwards."""
    from sccluster import settings

    old = settings.verbosity
    settings.verbosity = 1
    yield
    settings.verbosity = old
