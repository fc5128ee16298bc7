"""Consensus of partitions from several seeds: Hungarian alignment to a reference, then a vote.

Cost is linear in cells: every partition is compared with the reference through its contingency
table (clusters × clusters), never through a cells × cells co-association matrix. No labels involved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Consensus:
    """The outcome of :func:`consensus_labels`.

    ``labels`` (``int64``, 0..k-1 in the reference's numbering), ``agreement`` (per cell: the fraction
    of seeds whose aligned label is the consensus label), ``cluster_agreement`` (mean ``agreement``
    over each consensus cluster's cells, indexed by label), ``pairwise_ari`` (``N x N``, ARI between
    the seeds' partitions) and ``reference`` (index of the reference partition).
    """

    labels: np.ndarray
    agreement: np.ndarray
    cluster_agreement: np.ndarray
    pairwise_ari: np.ndarray
    reference: int

    @property
    def mean_pairwise_ari(self) -> float:
        """Mean ARI over the pairs of seeds (1.0 for a single partition)."""
        n = self.pairwise_ari.shape[0]
        if n < 2:
            return 1.0
        return float(self.pairwise_ari[np.triu_indices(n, 1)].mean())


def _codes(labels) -> np.ndarray:
    return np.unique(np.asarray(labels), return_inverse=True)[1].astype(np.int64)


def align(labels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``labels`` renamed to the reference's cluster ids by maximum-overlap one-to-one matching.

    Clusters left without a partner (when ``labels`` has more clusters than ``reference``) get new ids
    from ``reference.max() + 1`` on. Both inputs are ``0..k-1`` codes.
    """
    from scipy.optimize import linear_sum_assignment

    table = np.zeros((labels.max() + 1, reference.max() + 1), dtype=np.int64)
    np.add.at(table, (labels, reference), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.full(table.shape[0], -1, dtype=np.int64)
    mapping[rows] = cols
    spare = np.flatnonzero(mapping < 0)
    mapping[spare] = reference.max() + 1 + np.arange(len(spare))
    return mapping[labels]


def consensus_labels(partitions: list) -> Consensus:
    """Consensus of several partitions of the same cells (for example one per seed).

    The reference is the medoid partition: the one with the highest mean ARI to the others. Every
    partition is aligned to it (:func:`align`), and each cell takes the reference cluster that most
    partitions give it (ties go to the reference's own label). A cell's agreement is the fraction of
    partitions that give it its consensus label; a partition's cluster that matches no reference
    cluster never wins a vote but counts against agreement.
    """
    from sklearn.metrics import adjusted_rand_score

    parts = [_codes(p) for p in partitions]
    n = len(parts)
    ari = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            ari[i, j] = ari[j, i] = adjusted_rand_score(parts[i], parts[j])
    ref = int(np.argmax(ari.sum(axis=1))) if n > 1 else 0
    reference = parts[ref]
    k = int(reference.max()) + 1
    votes = np.zeros((len(reference), k), dtype=np.int32)
    rows = np.arange(len(reference))
    for part in parts:
        aligned = align(part, reference)
        matched = aligned < k
        np.add.at(votes, (rows[matched], aligned[matched]), 1)
    best = votes.max(axis=1)
    labels = np.where(votes[rows, reference] == best, reference, votes.argmax(axis=1))
    agreement = votes[rows, labels] / n
    sizes = np.bincount(labels, minlength=k)
    cluster_agreement = np.bincount(labels, weights=agreement, minlength=k) / np.maximum(sizes, 1)
    return Consensus(labels.astype(np.int64), agreement.astype(np.float32), cluster_agreement, ari, ref)
