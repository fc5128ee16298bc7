"""Package structure: one-way data flow, public API, model base-class contract."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import sccluster as scc
from sccluster import InputError
from sccluster.models import ClusterModel, available_methods, get_model_class

SRC = Path(scc.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
    return names


@pytest.mark.parametrize("layer", ["nn", "ot", "graph", "train", "metrics"])
def test_tensor_layers_never_import_anndata(layer):
    folder = SRC / layer
    if not folder.exists():
        pytest.skip(f"{layer} not present")
    for path in folder.rglob("*.py"):
        mods = _imports(path)
        assert not any(m.split(".")[0] in {"anndata", "scanpy"} for m in mods), path
        assert not any(
            m.startswith("..") and m.split(".")[2:3] in (["models"], ["tl"], ["io"], ["pp"]) for m in mods
        ), path
        if layer != "train":  # the training loop sits above nn and ot, below models
            assert not any(m.startswith("..") and m.split(".")[2:3] == ["train"] for m in mods), path


def test_no_global_numpy_rng_in_library():
    banned = (
        "np.random.seed(",
        "np.random.rand(",
        "np.random.randn(",
        "np.random.randint(",
        "np.random.choice(",
        "np.random.permutation(",
        "np.random.shuffle(",
        "np.random.normal(",
    )
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for b in banned:
            assert b not in text, f"{path} uses the global numpy RNG ({b})"


def test_public_api():
    for name in ["read", "pp", "tl", "models", "metrics", "datasets", "settings", "__version__"]:
        assert hasattr(scc, name)
    assert {"leiden", "kmeans"} <= set(available_methods())
    with pytest.raises(InputError, match="unknown method"):
        get_model_class("nope")


class _Toy(ClusterModel):
    name = "toy"
    supports_save = True
    supports_predict = True

    def __init__(self, n_clusters=None, *, shift: float = 0.0, random_state=0):
        super().__init__(n_clusters, random_state=random_state)
        self.shift = shift

    def _fit(self, adata, *, layer):
        self.embedding_ = np.asarray(adata.X.sum(axis=1)).reshape(-1, 1) + self.shift
        self.labels_ = (self.embedding_[:, 0] > np.median(self.embedding_)).astype(int)
        self.cut_ = float(np.median(self.embedding_))

    def _predict_proba(self, adata, *, layer):
        e = np.asarray(adata.X.sum(axis=1)).ravel() + self.shift
        hi = (e > self.cut_).astype(float)
        return np.stack([1 - hi, hi], axis=1)

    def _get_state(self):
        return {"cut": self.cut_}

    def _set_state(self, state, device):
        self.cut_ = state["cut"]


def test_model_surface_save_load_and_errors(synthetic_adata, tmp_path, monkeypatch):
    m = _Toy(shift=1.0)
    with pytest.raises(InputError, match="not fitted"):
        m.predict(synthetic_adata)
    labels = m.fit_predict(synthetic_adata)
    assert m.n_clusters_ == 2 and m.fit_time_ >= 0 and m.seed_ == 0
    np.testing.assert_array_equal(m.predict(synthetic_adata), labels)
    path = tmp_path / "toy.pt"
    m.save(path)
    with pytest.raises(InputError, match="exists"):
        m.save(path)
    loaded = _Toy.load(path)
    assert loaded.get_params() == m.get_params()
    np.testing.assert_array_equal(loaded.predict(synthetic_adata), labels)
    # incompatible format version → clear error
    import sccluster.models._persistence as base

    monkeypatch.setattr(base, "MODEL_FORMAT", base.MODEL_FORMAT + 1)
    with pytest.raises(InputError, match="refit"):
        _Toy.load(path)
    monkeypatch.undo()
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a readable"):
        _Toy.load(tmp_path / "junk.pt")
    with pytest.raises(InputError, match="unknown parameter"):
        m.set_params(bogus=1)
    with pytest.raises(InputError, match="more than"):
        _Toy(n_clusters=10_000).fit(synthetic_adata)
    with pytest.raises(InputError, match="positive integer"):
        _Toy(n_clusters=0).fit(synthetic_adata)
    with pytest.raises(InputError, match="must be an AnnData"):
        m.predict(synthetic_adata.X)
    with pytest.raises(InputError, match="does not exist"):
        m.save(tmp_path / "no_such_folder" / "toy.pt")
    # a file whose parameters this version does not know: one line, no traceback
    import torch

    payload = torch.load(path, weights_only=False)
    payload["params"]["added_later"] = 1
    torch.save(payload, tmp_path / "newer.pt")
    with pytest.raises(InputError, match="does not match"):
        _Toy.load(tmp_path / "newer.pt")


def test_failed_refit_leaves_an_unfitted_model(synthetic_adata, tmp_path, monkeypatch):
    m = _Toy().fit(synthetic_adata)

    def broken(self, adata, *, layer):
        self.embedding_ = np.zeros((3, 1))  # partial state of the new fit
        raise RuntimeError("interrupted")

    monkeypatch.setattr(_Toy, "_fit", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        m.fit(synthetic_adata)
    for name in ("labels_", "embedding_", "cut_", "seed_", "soft_assignments_"):
        assert not hasattr(m, name)
    with pytest.raises(InputError, match="not fitted"):
        m.save(tmp_path / "half.pt")


class _EmptyCentre(_Toy):
    """A model whose head has three clusters, one of which ends up empty."""

    name = "toy-empty"

    def _fit(self, adata, *, layer):
        super()._fit(adata, layer=layer)
        self.labels_ = np.where(self.labels_ == 1, 2, 0)  # cluster 1 unused
        self.soft_assignments_ = self._predict_proba(adata, layer=layer)

    def _predict_proba(self, adata, *, layer):
        two = super()._predict_proba(adata, layer=layer)
        return np.stack([two[:, 0] * 0.9, np.full(len(two), 0.05), two[:, 1] * 0.9 + 0.05], axis=1)


def test_empty_clusters_are_dropped_and_labels_contiguous(synthetic_adata, tmp_path):
    m = _EmptyCentre().fit(synthetic_adata)
    assert m.n_clusters_ == 2 and set(np.unique(m.labels_)) == {0, 1}
    assert m.soft_assignments_.shape[1] == 2
    np.testing.assert_allclose(m.soft_assignments_.sum(axis=1), 1.0)
    np.testing.assert_array_equal(m.predict(synthetic_adata), m.labels_)
    assert m.predict_proba(synthetic_adata).shape[1] == 2
    m.save(tmp_path / "m.pt")
    np.testing.assert_array_equal(_EmptyCentre.load(tmp_path / "m.pt").predict(synthetic_adata), m.labels_)


def test_progress_bars_stay_quiet_in_a_pipe():
    """Progress written to a file or pipe is redrawn rarely, not at every step of training."""
    import subprocess
    import sys

    code = (
        "import sccluster as scc\n"
        "from sccluster.datasets import synthetic\n"
        "a = synthetic(n_cells=300, n_genes=100, n_clusters=3, random_state=0)\n"
        "scc.pp.prepare(a)\n"
        "scc.models.BGFormer(3, pretrain_steps=400, cluster_steps=100, d_model=32, n_anchors=8, device='cpu').fit(a)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    bars = [part for part in out.stderr.replace("\r", "\n").splitlines() if "bgformer pretrain" in part]
    assert 1 <= len(bars) <= 10, len(bars)  # a terminal would get an update every step or so
