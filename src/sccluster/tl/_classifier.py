"""Cell-type classification on an embedding: a calibrated classifier and a novelty score.

Both are fitted on reference cells with their labels (inputs) and applied to query cells; neither ever
sees a query label.

- :class:`CalibratedClassifier`: multinomial logistic regression on the standardised embedding, its
  probabilities calibrated by temperature scaling (Guo et al. 2017) on held-out reference cells.
- :class:`NoveltyScorer`: the Mahalanobis distance of a cell to the nearest reference type in the
  embedding (Lee et al. 2018), divided by the ``1 - alpha`` quantile of the same distance among held-out
  reference cells; above 1 the cell is farther from every type than all but ``alpha`` of the reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: Most reference cells the classifier and the temperature are fitted on (class-stratified subsample).
MAX_TRAIN_CELLS = 100_000
#: Most reference cells the novelty score compares with (class-stratified subsample).
MAX_NOVELTY_CELLS = 50_000


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


@dataclass
class CalibratedClassifier:
    """Logistic regression on standardised features with temperature-scaled probabilities.

    :meth:`fit` trains the regression (temperature 1); :meth:`calibrate` fits the temperature on cells the
    regression and the embedding were not fitted on. ``classes`` are the label names in column order of
    :meth:`predict_proba`.
    """

    classes: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (n_classes, d)
    intercept: np.ndarray  # (n_classes,)
    temperature: float = 1.0

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, *, seed: int, c: float = 1.0,
            classes: np.ndarray | None = None) -> CalibratedClassifier:  # fmt: skip
        """Fit on features ``x`` ``(n, d)`` and labels ``(n,)`` (at least two classes).

        ``c`` is the inverse L2 penalty of scikit-learn's ``LogisticRegression`` (default 1.0); ``classes``
        the full list of class names when some are absent from ``labels`` (they get no probability).
        At most :data:`MAX_TRAIN_CELLS` cells (class-stratified, seeded) are used.
        """
        rng = np.random.default_rng(seed)
        labels = np.asarray(labels, dtype=object).astype(str)
        classes = np.unique(labels) if classes is None else np.asarray(classes, dtype=object).astype(str)
        codes = np.searchsorted(classes, labels)
        rows = stratified_subsample(codes, MAX_TRAIN_CELLS, rng)
        x, codes = np.asarray(x, dtype=np.float64)[rows], codes[rows]
        center = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        coef, intercept = _logistic((x - center) / scale, codes, len(classes), c)
        return cls(classes.astype(object), center, scale, coef, intercept)

    def calibrate(self, x: np.ndarray, labels: np.ndarray) -> CalibratedClassifier:
        """Set the temperature that minimises the log-loss of the held-out cells ``x`` with ``labels``."""
        labels = np.asarray(labels, dtype=object).astype(str)
        known = np.isin(labels, self.classes)
        if known.sum() >= 2:
            self.temperature = fit_temperature(
                self.logits(x[known]), np.searchsorted(self.classes, labels[known])
            )
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated logits ``(n, n_classes)``."""
        return _logits(
            (self.coef, self.intercept), (np.asarray(x, dtype=np.float64) - self.center) / self.scale
        )

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


@dataclass
class NoveltyScorer:
    """Novelty: how unlike every reference type a cell is.

    The squared Mahalanobis distance to the nearest reference type (class means, one shared covariance),
    over the ``1 - alpha`` quantile of the same distance among held-out reference cells.

    The score of Lee et al. (2018, "A simple unified framework for detecting out-of-distribution samples"):
    the covariance of the cells around their type's mean, shared by the types, measures a distance in units
    of the within-type spread, so a cell that differs from every type along a direction in which the types
    themselves vary little stands out. ``> 1``: farther from every type than all but ``alpha`` of the
    reference cells.
    """

    means: np.ndarray  # (n_classes, d)
    precision: np.ndarray  # (d, d)
    threshold: float
    alpha: float

    @classmethod
    def fit(cls, z: np.ndarray, codes: np.ndarray, n_classes: int, *, alpha: float = 0.01, seed: int = 0,
            ridge: float = 1e-3) -> NoveltyScorer:  # fmt: skip
        """Fit on reference embeddings ``z`` ``(n, d)`` and their class codes (positions in the classifier's classes).

        ``ridge`` (times the mean variance) is added to the covariance's diagonal, so that it can be inverted
        when a direction has no spread. Fitted on a class-stratified subsample of at most
        :data:`MAX_NOVELTY_CELLS` cells.
        """
        rng = np.random.default_rng(seed)
        rows = stratified_subsample(codes, MAX_NOVELTY_CELLS, rng)
        x, codes = np.asarray(z, dtype=np.float64)[rows], codes[rows]
        means = np.zeros((n_classes, x.shape[1]))
        for c in range(n_classes):
            if (codes == c).any():
                means[c] = x[codes == c].mean(axis=0)
        dev = x - means[codes]
        cov = dev.T @ dev / max(len(x) - n_classes, 1)
        cov += ridge * max(float(np.trace(cov)) / len(cov), 1e-12) * np.eye(len(cov))
        scorer = cls(means, np.linalg.inv(cov), 1.0, float(alpha))
        return scorer.calibrate(x)

    def calibrate(self, z: np.ndarray) -> NoveltyScorer:
        """Set the threshold to the conformal ``1 - alpha`` quantile of the distances of cells ``z``.

        Give cells the embedding and the class means were not fitted on (a model places its own training
        cells closer to their types than new cells): the ``ceil((n + 1)(1 - alpha))``-th smallest of ``n``
        distances (the largest when that exceeds ``n``), so a new cell of a reference type exceeds it with
        probability at most ``alpha``.
        """
        null = np.sort(self.distances(z))
        rank = min(int(np.ceil((len(null) + 1) * (1 - self.alpha))), len(null))
        self.threshold = max(float(null[rank - 1]), 1e-12)
        return self

    def distances(self, z: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row of ``z`` to the nearest class mean, by chunks of cells."""
        z = np.asarray(z, dtype=np.float64)
        out = np.empty(len(z))
        for start in range(0, len(z), 8192):
            diff = z[start : start + 8192, None, :] - self.means[None]  # (chunk, classes, d)
            out[start : start + 8192] = np.einsum("ncd,de,nce->nc", diff, self.precision, diff).min(axis=1)
        return out

    def score(self, z: np.ndarray) -> np.ndarray:
        """Novelty of each row of ``z``: ``> 1`` means unlike every reference type."""
        return (self.distances(z) / self.threshold).astype(np.float32)

    def state_dict(self) -> dict:
        """Plain arrays and numbers."""
        return {
            "means": self.means,
            "precision": self.precision,
            "threshold": self.threshold,
            "alpha": self.alpha,
        }
