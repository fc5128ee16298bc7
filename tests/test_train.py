"""The training loop shared by the deep models (sccluster.train), on toy modules."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from sccluster import TrainingError
from sccluster.nn import LossOutput
from sccluster.train import OptimizerSpec, Phase, Trainer, phase_lr


class Regression(nn.Module):
    """A linear model with a squared loss: a module as the loop sees it."""

    def __init__(self, n_in: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, 1)
        self.snapshots: list[torch.Tensor] = []

    def forward(self, batch):
        return {"pred": self.linear(batch["x"]).squeeze(1)}

    def loss(self, batch, outputs):
        mse = (outputs["pred"] - batch["y"]).pow(2).mean()
        terms = {"mse": mse.detach()}
        if "target_log_q" in batch:
            self.snapshots.append(batch["target_log_q"])
            terms["seen"] = torch.tensor(1.0)
        return LossOutput(mse, terms)

    def target_log_q(self, batch):
        return self.linear.weight.detach().clone()


def batches(seed: int = 0, nan_at: int | None = None):
    rng = np.random.default_rng(seed)
    for i in itertools.count():
        x = torch.as_tensor(rng.standard_normal((8, 3)), dtype=torch.float32)
        y = x.sum(1)
        if i == nan_at:
            y = y * float("nan")
        yield {"x": x, "y": y}


def test_history_rows_are_window_means_with_stage_and_step():
    torch.manual_seed(0)
    trainer = Trainer(Regression(), OptimizerSpec(lr=0.05), name="toy")
    rows = trainer.run(Phase("pretrain", 10, batches(), log_every=4))
    assert [r["step"] for r in rows] == [4, 8, 10]  # the last window is shorter
    assert all(r["stage"] == "pretrain" and set(r) == {"stage", "step", "loss", "mse"} for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert trainer.history == rows
    trainer.run(Phase("cluster", 3, batches(1), log_every=50))
    assert [r["stage"] for r in trainer.history] == ["pretrain"] * 3 + ["cluster"]
    assert trainer.run(Phase("none", 0, batches())) == [] and len(trainer.history) == 4


def test_non_finite_loss_raises_training_error():
    trainer = Trainer(Regression(), OptimizerSpec(lr=0.01), name="toy")
    with pytest.raises(TrainingError, match=r"toy training diverged \(fit step 3: loss is nan\).*lr=0.001"):
        trainer.run(Phase("fit", 10, batches(nan_at=2)))


def test_early_stopping_stops_and_restores_the_best_weights():
    module = Regression()
    weights = []

    class Rising:
        name = "val_mse"

        def loss(self, m):
            weights.append(m.linear.weight.detach().clone())
            return [3.0, 1.0, 2.0, 2.5, 0.5][len(weights) - 1]

    rows = Trainer(module, OptimizerSpec(lr=0.05), name="toy").run(
        Phase("pretrain", 100, batches(), log_every=5, validation=Rising(), patience=2)
    )
    assert [r["val_mse"] for r in rows] == [3.0, 1.0, 2.0, 2.5]  # best at the 2nd, then 2 without a new best
    assert rows[-1]["step"] == 20
    assert torch.equal(module.linear.weight, weights[1])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_schedule_restarts_each_phase(schedule, monkeypatch):
    rates: list[float] = []
    original = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    trainer = Trainer(Regression(), OptimizerSpec("adam", lr=0.1, schedule=schedule), name="toy")
    for name in ("a", "b"):
        trainer.run(Phase(name, 8, batches()))
    if schedule == "constant":
        assert rates == [0.1] * 16
    else:
        expected = [0.05 * (1 + math.cos(math.pi * s / 8)) for s in range(8)] * 2
        np.testing.assert_allclose(rates, expected)
        assert rates[4] == pytest.approx(0.05) and phase_lr(0.1, 4, 8) == pytest.approx(0.05)


def test_optimizer_scope():
    module = Regression()
    per_phase = Trainer(module, OptimizerSpec("adamw", lr=0.01, weight_decay=0.1), name="toy")
    per_phase.run(Phase("a", 2, batches()))
    first = per_phase.optimizer
    assert isinstance(first, torch.optim.AdamW) and first.defaults["weight_decay"] == 0.1
    per_phase.run(Phase("b", 2, batches()))
    assert per_phase.optimizer is not first  # a new optimiser, new moment estimates

    whole = Trainer(module, OptimizerSpec("adam", lr=0.01, scope="run"), name="toy")
    whole.run(Phase("a", 2, batches()))
    opt = whole.optimizer
    module.centers = nn.Parameter(torch.zeros(2, 3))  # a parameter that appears between phases
    whole.run(Phase("b", 2, batches()))
    assert whole.optimizer is opt and len(opt.param_groups) == 2
    assert opt.param_groups[1]["params"][0] is module.centers
    assert opt.state[module.linear.weight]["step"] == 4  # state carried across the phases


def test_snapshot_feeds_the_target_and_refreshes_every_interval():
    module = Regression()
    trainer = Trainer(module, OptimizerSpec(lr=0.05), name="toy")
    trainer.run(Phase("cluster", 5, batches(), snapshot_interval=2))
    s = module.snapshots
    assert len(s) == 5
    assert torch.equal(s[0], s[1]) and torch.equal(s[2], s[3]) and not torch.equal(s[1], s[2])
    assert not torch.equal(s[3], s[4])
    Trainer(module, OptimizerSpec(lr=0.05), name="toy").run(Phase("pretrain", 3, batches()))
    assert len(module.snapshots) == 5  # no snapshot, no target in the batch
