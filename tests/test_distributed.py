"""Data-parallel training with torch.distributed (gloo on CPU), launched by torchrun as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import anndata as ad
import numpy as np
import pytest

from sccluster.datasets import synthetic
from sccluster.metrics import adjusted_rand_index

MODEL = {
    "n_anchors": 16, "n_layers": 2, "n_heads": 2, "d_model": 64, "n_latent": 16, "batch_size": 128, "lr": 3e-3,
    "pretrain_steps": 300, "cluster_steps": 150, "target": "balanced",
}  # fmt: skip

SIAMESE = {"pretrain_steps": 200, "cluster_steps": 100}

# Fits a model n_fits times (same seed) on every rank; rank 0 saves the label vectors.
SCRIPT = """
import sys
import numpy as np
import anndata as ad
from sccluster import _distributed
from sccluster.models import {cls}

adata = ad.read_h5ad(sys.argv[1])
runs = [{cls}(4, device="cpu", **{model}).fit(adata).labels_ for _ in range({n_fits})]
ctx = _distributed.current()
if ctx.is_main:
    np.save(sys.argv[2], np.stack(runs))
sys.stdout.write(f"world {{ctx.world_size}} rank {{ctx.rank}}\\n")
_distributed.shutdown()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(n: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "planted.h5ad"
    synthetic(n_cells=600, n_genes=200, n_clusters=4, fold_change=8.0, random_state=0).write_h5ad(path)
    return path


def _script(folder, cls: str, model: dict, n_fits: int):
    path = folder / f"fit_{cls}.py"
    path.write_text(textwrap.dedent(SCRIPT.format(cls=cls, model=model, n_fits=n_fits)))
    return path


def _one_process(planted, script, folder) -> np.ndarray:
    out = folder / "one.npy"
    proc = subprocess.run([sys.executable, str(script), str(planted), str(out)], capture_output=True, text=True,
                          env=_env(), timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "world 1 rank 0" in proc.stdout
    return np.load(out)[0]


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    return _script(tmp_path_factory.mktemp("ddp"), "BGFormer", MODEL, 2)


@pytest.fixture(scope="module")
def one_process(planted, script, tmp_path_factory):
    return _one_process(planted, script, tmp_path_factory.mktemp("ddp"))


def test_two_processes_agree_with_one_and_repeat_exactly(planted, script, one_process, tmp_path):
    out = tmp_path / "two.npy"
    proc = _torchrun(2, str(script), str(planted), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "world 2 rank 0" in proc.stdout and "world 2 rank 1" in proc.stdout
    first, second = np.load(out)
    np.testing.assert_array_equal(first, second)  # same seed, same world size: the same labels
    truth = ad.read_h5ad(planted).obs["cell_type"].to_numpy()
    assert adjusted_rand_index(one_process, first) >= 0.95
    assert adjusted_rand_index(truth, first) >= 0.95


def test_torchrun_cli_writes_one_output_and_resumes(planted, one_process, tmp_path):
    out, ckpt = tmp_path / "out.h5ad", tmp_path / "ckpt"
    params = [a for k, v in MODEL.items() for a in ("--param", f"{k}={v}")]
    args = ["-m", "sccluster", "cluster", str(planted), "-o", str(out), "--method", "bgformer", "--n-clusters", "4",
            "--param", "device=cpu", *params, "--checkpoint-dir", str(ckpt)]  # fmt: skip
    proc = _torchrun(2, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("clusters  4 found") == 1  # rank 0 reports, rank 1 is quiet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "out.h5ad"]  # one output, no .part file
    labels = ad.read_h5ad(out).obs["sccluster"].astype(int).to_numpy()
    assert adjusted_rand_index(one_process, labels) >= 0.95
    assert sorted(p.name for p in (ckpt / "bgformer-seed0").iterdir()) == [
        "phase0-pretrain.rank0.pt", "phase0-pretrain.rank1.pt", "phase1-cluster.rank0.pt", "phase1-cluster.rank1.pt",
    ]  # fmt: skip
    out.unlink()
    resumed = _torchrun(2, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(ad.read_h5ad(out).obs["sccluster"].astype(int).to_numpy(), labels)
    one = subprocess.run(
        [sys.executable, *args, "--resume"], capture_output=True, text=True, env=_env(), timeout=600
    )
    assert one.returncode == 2
    assert "different world_size" in one.stderr


@pytest.mark.slow
def test_siamese_trains_data_parallel(planted, tmp_path):
    script = _script(tmp_path, "SiameseClu", SIAMESE, 1)
    one = _one_process(planted, script, tmp_path)
    proc = _torchrun(2, str(script), str(planted), str(tmp_path / "two.npy"))
    assert proc.returncode == 0, proc.stderr
    two = np.load(tmp_path / "two.npy")[0]
    truth = ad.read_h5ad(planted).obs["cell_type"].to_numpy()
    assert adjusted_rand_index(one, two) >= 0.95
    assert adjusted_rand_index(truth, two) >= 0.95
