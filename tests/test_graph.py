"""Sparse graph operations: kNN graph, PPR diffusion, edge dropping."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sccluster import graph


def _points(n=200, d=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=5, size=(3, d))
    return (centers[rng.integers(0, 3, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_knn_graph_is_sparse_symmetric_and_bounded():
    x = _points()
    adj, sigma = graph.knn_graph(x, 10, seed=0)
    assert sp.issparse(adj) and adj.shape == (200, 200)
    assert (abs(adj - adj.T)).max() == 0
    assert adj.diagonal().sum() == 0
    assert 200 * 10 <= adj.nnz <= 2 * 200 * 10
    assert adj.data.min() > 0 and adj.data.max() <= 1
    assert np.all(sigma > 0)
    # every point keeps its own 10 nearest neighbours
    assert np.all(np.diff(adj.indptr) >= 10)


def test_adaptive_weights_do_not_underflow_at_large_scale():
    x = _points() * 1000.0
    adj, _ = graph.knn_graph(x, 10, seed=0)
    assert adj.data.min() > 1e-3


def test_ppr_matches_dense_closed_form():
    x = _points(60, 4)
    adj, _ = graph.knn_graph(x, 5, seed=0)
    a_hat = graph.normalize_adjacency(adj)
    feats = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    alpha = 0.2
    dense = alpha * np.linalg.solve(np.eye(60) - (1 - alpha) * a_hat.toarray().astype(np.float64), feats)
    approx = graph.ppr_propagate(a_hat, feats, alpha=alpha, steps=150)
    np.testing.assert_allclose(approx, dense, atol=1e-4)
    # few steps already close: error decays like (1 - alpha)^T
    rough = graph.ppr_propagate(a_hat, feats, alpha=alpha, steps=10)
    assert np.abs(rough - dense).max() < 0.15 * np.abs(dense).max()


def test_normalized_adjacency_is_symmetric_with_self_loops():
    adj, _ = graph.knn_graph(_points(50, 3), 4, seed=0)
    a_hat = graph.normalize_adjacency(adj)
    assert abs(a_hat - a_hat.T).max() < 1e-6
    assert np.all(a_hat.diagonal() > 0)
    assert np.abs(np.linalg.eigvalsh(a_hat.toarray())).max() <= 1 + 1e-5


def test_drop_edges_keeps_input_and_removes_weak_edges_first():
    adj, _ = graph.knn_graph(_points(), 10, seed=0)
    before = adj.copy()
    rng = np.random.default_rng(0)
    dropped = [graph.drop_edges(adj, 0.3, rng) for _ in range(20)]
    assert (abs(adj - before)).max() == 0 and adj.nnz == before.nnz  # input untouched
    upper = sp.triu(adj, 1).tocoo()
    weak = upper.data <= np.quantile(upper.data, 0.25)
    strong = upper.data >= np.quantile(upper.data, 0.75)
    kept = np.zeros(upper.nnz)
    for d in dropped:
        assert (abs(d - d.T)).max() == 0
        assert (d - d.multiply(adj > 0)).nnz == 0  # only existing edges survive
        kept += np.asarray(d[upper.row, upper.col]).ravel() > 0
    kept /= len(dropped)
    assert kept[weak].mean() < kept[strong].mean() - 0.3
    assert abs(1 - kept.mean() - 0.3) < 0.03  # about the requested fraction is dropped
    assert not np.array_equal(dropped[0].indices, dropped[1].indices)  # resampled each call


def test_ppr_extend_of_training_point_is_close_to_its_feature():
    x = _points(100, 4)
    adj, sigma = graph.knn_graph(x, 8, seed=0)
    h = graph.ppr_propagate(graph.normalize_adjacency(adj), x, alpha=0.15, steps=20)
    idx, dist = graph.nearest_neighbors(x, 8, query=x[:10])
    assert np.all(idx[:, 0] == np.arange(10))
    w = graph.edge_weights(dist, dist[:, -1], sigma[idx])
    h_new = graph.ppr_extend(idx, w, h, x[:10], graph.graph_degrees(adj), alpha=0.15)
    spread = np.abs(h).max()
    assert np.abs(h_new - h[:10]).max() < 0.25 * spread


def test_ppr_extend_with_degrees_reproduces_the_training_fixed_point():
    # A training point reattached by exactly its own graph edges gets back its converged PPR
    # features under the training normalisation D^-1/2 (A + I) D^-1/2.
    x = _points(100, 4)
    adj, _ = graph.knn_graph(x, 8, seed=0)
    h = graph.ppr_propagate(graph.normalize_adjacency(adj), x, alpha=0.15, steps=300)
    deg = graph.graph_degrees(adj)
    np.testing.assert_allclose(deg, 1 + np.asarray(adj.sum(axis=1)).ravel(), rtol=1e-6)
    errors_sym, errors_row = [], []
    for i in range(20):
        nb = adj.indices[adj.indptr[i] : adj.indptr[i + 1]][None, :]
        w = adj.data[adj.indptr[i] : adj.indptr[i + 1]][None, :]
        sym = graph.ppr_extend(nb, w, h, x[i : i + 1], deg, alpha=0.15)
        row = 0.85 * (w / w.sum()) @ h[nb[0]] + 0.15 * x[i : i + 1]  # one row-normalised step
        errors_sym.append(np.abs(sym[0] - h[i]).max())
        errors_row.append(np.abs(row[0] - h[i]).max())
    spread = np.abs(h).max()
    assert max(errors_sym) < 1e-4 * spread
    assert max(errors_row) > 100 * max(errors_sym)  # the row-normalised step is not the fixed point


def test_drop_edges_with_tied_weights_does_not_favour_any_cells():
    # Binary weights all tie; the drop rate must not depend on the cells' row positions.
    adj, _ = graph.knn_graph(_points(600), 10, weights="binary", seed=0)
    upper = sp.triu(adj, 1).tocoo()
    rng = np.random.default_rng(0)
    dropped = np.zeros(upper.nnz)
    for _ in range(20):
        d = graph.drop_edges(adj, 0.2, rng)
        dropped += np.asarray(d[upper.row, upper.col]).ravel() == 0
    dropped /= 20
    first, last = upper.row < 200, upper.row >= 400
    assert abs(dropped[first].mean() - dropped[last].mean()) < 0.03
    assert abs(dropped.mean() - 0.2) < 0.02


@pytest.mark.parametrize("exact_max", [10_000, 0])  # scikit-learn, then pynndescent
def test_neighbor_index_matches_brute_force_and_is_reusable(exact_max):
    x = _points(300, 5)
    q = _points(40, 5) + 0.05
    index = graph.NeighborIndex(x, 10, seed=0, exact_max=exact_max)
    d_all = np.sqrt(((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    truth = np.argsort(d_all, axis=1)[:, :10]
    idx, dist = index.query(q, 10)
    assert idx.shape == dist.shape == (40, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, truth, strict=True)])
    assert recall >= (1.0 if exact_max else 0.9)
    np.testing.assert_allclose(dist, np.take_along_axis(d_all, idx, axis=1), rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(dist, axis=1) >= -1e-6)  # nearest first
    idx2, dist2 = index.query(q, 10)  # the same index answers again, identically
    np.testing.assert_array_equal(idx, idx2)
    own, _ = index.self_neighbors(10)
    assert own.shape == (300, 10) and not np.any(own == np.arange(300)[:, None])
