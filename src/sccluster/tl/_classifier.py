"""Cell-type classification on an embedding: a calibrated classifier and a novelty score.

Both are fitted on reference cells with their labels (inputs) and applied to query cells; neither ever
sees a query label.

- :class:`CalibratedClassifier`: multinomial logistic regression on the standardised embedding, its
  probabilities calibrated by temperature scaling (Guo et al. 2017) fitted on cross-fitted reference logits.
- :class:`NoveltyScorer`: distance of a cell to its ``k``-th nearest reference cell in the embedding (Sun et
  al. 2022, "Out-of-distribution detection with deep nearest neighbors"), divided by the ``1 - alpha``
  quantile of the same distance among the reference cells of the type the cell is given (leave-one-out);
  above 1 the cell is farther from the reference than all but ``alpha`` of that type's own cells.
  :func:`class_thresholds` gives such per-type quantiles for any score (the transfer model also scores
  the expression a reference PCA cannot explain, which the embedding may not show).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .. import graph

logger = logging.getLogger(__name__)

#: Folds of the cross-fitting that gives the logits the temperature is fitted on.
CALIBRATION_FOLDS = 5
#: Most reference cells the classifier and the temperature are fitted on (class-stratified subsample).
MAX_TRAIN_CELLS = 100_000
#: Most reference cells the novelty score compares with (class-stratified subsample).
MAX_NOVELTY_CELLS = 50_000
#: Fewest reference cells of a type for a null distribution of its own; smaller types use the pooled one.
MIN_TYPE_NULL = 20


def stratified_subsample(codes: np.ndarray, max_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of at most ``max_cells`` cells, each class keeping a share proportional to its size.

    Every class keeps at least ``min(its size, 50)`` cells, so rare types are not lost; all cells when
    there are at most ``max_cells``.
    """
    n = len(codes)
    if n <= max_cells:
        return np.arange(n)
    keep = []
    for c in np.unique(codes):
        cells = np.flatnonzero(codes == c)
        want = min(len(cells), max(50, int(round(max_cells * len(cells) / n))))
        keep.append(cells if want >= len(cells) else rng.choice(cells, want, replace=False))
    return np.sort(np.concatenate(keep))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, codes: np.ndarray) -> float:
    """The temperature ``T`` (0.05 to 20) minimising the negative log-likelihood of ``softmax(logits / T)``."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(codes))

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, codes]))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def _folds(codes: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of every cell, classes spread round-robin over the folds; a class of one cell is never held out."""
    fold = np.full(len(codes), -1, dtype=np.int64)
    for c in np.unique(codes):
        cells = rng.permutation(np.flatnonzero(codes == c))
        if len(cells) >= 2:
            fold[cells] = (np.arange(len(cells)) + rng.integers(n_folds)) % n_folds
    return fold


@dataclass
class CalibratedClassifier:
    """Logistic regression on standardised features with temperature-scaled probabilities.

    Fitted with :meth:`fit`; ``classes`` are the label names in column order of :meth:`predict_proba`.
    """

    classes: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (n_classes, d)
    intercept: np.ndarray  # (n_classes,)
    temperature: float

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, *, seed: int, c: float = 1.0) -> CalibratedClassifier:
        """Fit on reference features ``x`` ``(n, d)`` and labels ``(n,)`` (at least two classes).

        ``c`` is the inverse L2 penalty of scikit-learn's ``LogisticRegression`` (default 1.0).
        """
        rng = np.random.default_rng(seed)
        classes, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
        rows = stratified_subsample(codes, MAX_TRAIN_CELLS, rng)
        x, codes = np.asarray(x, dtype=np.float64)[rows], codes[rows]
        center = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        z = (x - center) / scale
        fold = _folds(codes, CALIBRATION_FOLDS, rng)
        held = np.zeros((len(codes), len(classes)))
        for f in range(CALIBRATION_FOLDS):
            test = fold == f
            if test.any():
                held[test] = _logits(_logistic(z[~test], codes[~test], len(classes), c), z[test])
        temperature = fit_temperature(held[fold >= 0], codes[fold >= 0]) if (fold >= 0).any() else 1.0
        coef, intercept = _logistic(z, codes, len(classes), c)
        return cls(classes, center, scale, coef, intercept, temperature)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated logits ``(n, n_classes)``."""
        return _logits((self.coef, self.intercept), (np.asarray(x, dtype=np.float64) - self.center) / self.scale)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities ``(n, n_classes)``."""
        return _softmax(self.logits(x) / self.temperature).astype(np.float32)


def _logistic(z: np.ndarray, codes: np.ndarray, n_classes: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression; the coefficients of every class, also those absent from ``codes``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    coef = np.zeros((n_classes, z.shape[1]))
    intercept = np.full(n_classes, -1e4)  # a class the fold never saw gets no probability
    present = np.unique(codes)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return coef, intercept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        lr = LogisticRegression(C=c, max_iter=500).fit(z, codes)
    if len(present) == 2:  # scikit-learn's binary model: one row for the second class
        coef[present[1]], intercept[present[1]] = lr.coef_[0], lr.intercept_[0]
        coef[present[0]], intercept[present[0]] = 0.0, 0.0
    else:
        coef[present], intercept[present] = lr.coef_, lr.intercept_
    return coef, intercept


def _logits(params: tuple[np.ndarray, np.ndarray], z: np.ndarray) -> np.ndarray:
    coef, intercept = params
    return z @ coef.T + intercept


def class_thresholds(null: np.ndarray, codes: np.ndarray, n_classes: int, level: float) -> np.ndarray:
    """The ``level`` quantile of ``null`` within each class (the pooled one for classes under :data:`MIN_TYPE_NULL`)."""
    pooled = float(np.quantile(null, level))
    out = np.full(n_classes, pooled)
    for c in range(n_classes):
        own = null[codes == c]
        if len(own) >= MIN_TYPE_NULL:
            out[c] = float(np.quantile(own, level))
    return np.maximum(out, 1e-6)


@dataclass
class NoveltyScorer:
    """Distance to the ``k``-th nearest reference cell over the same distance's ``1 - alpha`` quantile in the type.

    ``reference`` holds the reference points compared with, ``thresholds`` the quantile of each class (in
    the classifier's class order; the pooled quantile for types under :data:`MIN_TYPE_NULL` cells).
    """

    reference: np.ndarray
    thresholds: np.ndarray
    n_neighbors: int
    alpha: float
    seed: int

    @classmethod
    def fit(cls, z: np.ndarray, codes: np.ndarray, n_classes: int, *, n_neighbors: int = 10, alpha: float = 0.01,
            seed: int = 0) -> NoveltyScorer:  # fmt: skip
        """Fit on reference features ``z`` (the embedding as it is: standardising would give a model's noise
        dimensions the weight of its informative ones) and class codes (positions in the classifier's classes)."""
        rng = np.random.default_rng(seed)
        rows = stratified_subsample(codes, MAX_NOVELTY_CELLS, rng)
        ref, codes = np.ascontiguousarray(z[rows], dtype=np.float32), codes[rows]
        k = int(max(1, min(n_neighbors, len(ref) - 1)))
        index = graph.NeighborIndex(ref, k, seed=seed)
        _, dist = index.self_neighbors(k)
        thresholds = class_thresholds(dist[:, k - 1], codes, n_classes, 1 - alpha)
        scorer = cls(ref, thresholds, k, float(alpha), int(seed))
        scorer._index = index
        return scorer

    def score(self, z: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """Novelty of each point ``z`` given its predicted class code: ``> 1`` means unlike the reference."""
        index = getattr(self, "_index", None)
        if index is None:  # after loading: the index is rebuilt, not saved
            index = self._index = graph.NeighborIndex(self.reference, self.n_neighbors, seed=self.seed)
        _, dist = index.query(np.ascontiguousarray(z, dtype=np.float32), self.n_neighbors)
        return (dist[:, self.n_neighbors - 1] / self.thresholds[predicted]).astype(np.float32)

    def state_dict(self) -> dict:
        """Plain arrays and numbers (the index is rebuilt on load)."""
        return {"reference": self.reference, "thresholds": self.thresholds, "n_neighbors": self.n_neighbors,
                "alpha": self.alpha, "seed": self.seed}  # fmt: skip
