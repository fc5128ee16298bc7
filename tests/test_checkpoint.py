"""Checkpoints and resume of the deep models' training (``checkpoint_dir``, ``resume``, ``--resume``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from sccluster import InputError
from sccluster.datasets import synthetic
from sccluster.models import BGFormer, SiameseClu

SMALL = {
    "bgformer": (
        BGFormer,
        {
            "pretrain_steps": 60, "cluster_steps": 60, "batch_size": 64, "d_model": 16, "n_anchors": 8,
            "early_stopping": True, "target": "balanced",
        },
    ),
    "siamese": (SiameseClu, {"pretrain_steps": 40, "cluster_steps": 40, "n_hidden": 32}),
}  # fmt: skip


@pytest.fixture(scope="module")
def planted():
    return synthetic(n_cells=400, n_genes=100, n_clusters=4, random_state=0)


class _Steps:
    """Counts optimiser steps (all optimisers) and raises ``KeyboardInterrupt`` at a chosen one: a kill."""

    def __init__(self) -> None:
        self.count = 0
        self.interrupt_at: int | None = None
        self.handle = register_optimizer_step_post_hook(self._hook)

    def _hook(self, optimizer, args, kwargs) -> None:
        self.count += 1
        if self.interrupt_at is not None and self.count >= self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt

    def kill_at(self, step: int) -> None:
        self.count, self.interrupt_at = 0, step


@pytest.fixture
def steps():
    counter = _Steps()
    yield counter
    counter.handle.remove()


def _model(method: str, n_clusters=4, **kwargs):
    cls, params = SMALL[method]
    return cls(n_clusters, **{**params, **kwargs})


@pytest.mark.parametrize("method", ["bgformer", "siamese"])
def test_resumed_run_gives_the_labels_of_an_uninterrupted_one(planted, steps, tmp_path, method):
    reference = _model(method).fit(planted)
    ckpt = {"checkpoint_dir": str(tmp_path), "checkpoint_every": 10}
    n_pre = SMALL[method][1]["pretrain_steps"]
    # killed during pretraining (between two checkpoints), then again during the clustering stage
    steps.kill_at(n_pre // 2 + 5)
    with pytest.raises(KeyboardInterrupt):
        _model(method, **ckpt).fit(planted)
    steps.kill_at(n_pre // 2 + 25)
    with pytest.raises(KeyboardInterrupt):
        _model(method, **ckpt, resume=True).fit(planted)
    steps.kill_at(10**9)
    resumed = _model(method, **ckpt, resume=True).fit(planted)
    np.testing.assert_array_equal(resumed.labels_, reference.labels_)
    np.testing.assert_array_equal(resumed.embedding_, reference.embedding_)
    assert resumed.history_ == reference.history_
    folder = tmp_path / f"{resumed.name}-seed0"
    assert sorted(p.name for p in folder.iterdir()) == ["phase0-pretrain.pt", "phase1-cluster.pt"]


def test_finished_run_resumes_without_training(planted, steps, tmp_path):
    first = _model("bgformer", checkpoint_dir=str(tmp_path)).fit(planted)
    steps.kill_at(10**9)
    again = _model("bgformer", checkpoint_dir=str(tmp_path), resume=True).fit(planted)
    assert steps.count == 0
    np.testing.assert_array_equal(again.labels_, first.labels_)


def test_consensus_seeds_each_get_their_folder(planted, tmp_path):
    import sccluster as scc

    adata = planted.copy()
    kw = {**SMALL["bgformer"][1], "checkpoint_dir": str(tmp_path)}
    scc.tl.cluster(adata, method="bgformer", n_clusters=4, n_seeds=2, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bgformer-seed0", "bgformer-seed1"]


def test_a_folder_with_checkpoints_needs_resume(planted, tmp_path):
    _model("bgformer", checkpoint_dir=str(tmp_path)).fit(planted)
    with pytest.raises(InputError, match="already holds a run's checkpoints; pass resume=True"):
        _model("bgformer", checkpoint_dir=str(tmp_path)).fit(planted)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"lr": 5e-4}, "different params"),
        ({"data": True}, "different data"),
    ],
)
def test_checkpoint_of_another_run_is_refused(planted, tmp_path, change, what):
    _model("bgformer", checkpoint_dir=str(tmp_path)).fit(planted)
    data = planted[:-1].copy() if change.pop("data", False) else planted
    with pytest.raises(InputError, match=what):
        _model("bgformer", checkpoint_dir=str(tmp_path), resume=True, **change).fit(data)


def test_damaged_checkpoint_is_refused(planted, tmp_path):
    _model("bgformer", checkpoint_dir=str(tmp_path)).fit(planted)
    (tmp_path / "bgformer-seed0" / "phase0-pretrain.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        _model("bgformer", checkpoint_dir=str(tmp_path), resume=True).fit(planted)


def test_writes_are_atomic_and_leave_no_temporary_files(planted, tmp_path):
    _model("bgformer", checkpoint_dir=str(tmp_path), checkpoint_every=7).fit(planted)
    files = sorted(p.name for p in (tmp_path / "bgformer-seed0").iterdir())
    assert files == ["phase0-pretrain.pt", "phase1-cluster.pt"]
    state = torch.load(tmp_path / "bgformer-seed0" / "phase1-cluster.pt", weights_only=False)
    assert state["complete"] and state["step"] == SMALL["bgformer"][1]["cluster_steps"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"checkpoint_every": 0}, "checkpoint_every must be a positive integer"),
        ({"resume": True}, "resume=True needs checkpoint_dir"),
        ({"checkpoint_dir": 3}, "checkpoint_dir must be a folder path"),
        ({"checkpoint_dir": "x", "resume": "yes"}, "resume must be True or False"),
    ],
)
def test_bad_checkpoint_parameters(kwargs, message):
    with pytest.raises(InputError, match=message):
        BGFormer(4, **kwargs).validate_params()


# ---------------------------------------------------------------------------------------------- CLI
def _cli(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sccluster", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ), **popen,
    )  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sccluster", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )


CLI_MODEL = ["--method", "bgformer", "--n-clusters", "4", "--param", "d_model=16", "--param", "n_anchors=8",
             "--param", "batch_size=32", "--param", "pretrain_steps=600", "--param", "cluster_steps=100"]  # fmt: skip


def test_cli_killed_run_resumes_to_the_same_labels(planted, tmp_path):
    src = tmp_path / "in.h5ad"
    planted.write_h5ad(src)
    ref = _run("cluster", str(src), "-o", str(tmp_path / "ref.h5ad"), "--labels-csv", str(tmp_path / "ref.csv"),
               *CLI_MODEL)  # fmt: skip
    assert ref.returncode == 0, ref.stderr
    out, csv, ckpt = tmp_path / "out.h5ad", tmp_path / "out.csv", tmp_path / "ckpt"
    args = ["cluster", str(src), "-o", str(out), "--labels-csv", str(csv), *CLI_MODEL,
            "--checkpoint-dir", str(ckpt), "--checkpoint-every", "50"]  # fmt: skip
    proc = _cli(*args)
    end = time.monotonic() + 240
    while not list(ckpt.glob("*/phase0-pretrain.pt")):  # the first checkpoint is written: training runs
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # killed outright: no clean-up, as by the OOM killer or a lost node
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    again = _run(*args)  # without --resume: refused before the file is read
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: --checkpoint-dir {str(ckpt)!r} already holds checkpoints of this method and seed 0; add "
        "--resume to continue that run, or choose another folder"
    ]
    resumed = _run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    labels = pd.read_csv(csv, index_col=0).iloc[:, 0]
    expected = pd.read_csv(tmp_path / "ref.csv", index_col=0).iloc[:, 0]
    pd.testing.assert_series_equal(labels, expected)


def test_cli_checkpoint_options_are_checked_first(tmp_path):
    missing = str(tmp_path / "missing.h5ad")
    proc = _run("cluster", missing, "-o", str(tmp_path / "o.h5ad"), "--resume")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --resume needs --checkpoint-dir, the folder of the run to continue"
    proc = _run(
        "cluster", missing, "-o", str(tmp_path / "o.h5ad"), "--method", "kmeans", "--checkpoint-dir", "c"
    )
    assert proc.returncode == 2
    assert "--method kmeans does not train a network" in proc.stderr
