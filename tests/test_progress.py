"""What a newcomer sees while a run trains: an ETA that knows the phases ahead, and one line per
epoch of the world-model fit."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from agent.protocol import FitEpoch
from agent.runner.progress import FitProgress, PhaseEta, duration
from agent.world_model import EnsembleConfig
from agent.world_model.ensemble_training import fit_ensemble


def test_a_phase_not_run_yet_is_priced_by_its_cost_then_by_its_own_rate():
    eta = PhaseEta({"bc": 1000, "leq": 1000}, {"bc": 1.0, "leq": 10.0})
    assert eta.text() is None  # nothing measured yet
    eta.record("bc", 100, 30.0)  # the first chunk compiles: used only while it is all there is
    eta.record("bc", 100, 1.0)
    assert eta.rate("bc") == pytest.approx(100.0)
    assert eta.rate("leq") == pytest.approx(10.0)  # 10x the cost of a BC step
    assert eta.parts() == pytest.approx({"bc": 8.0, "leq": 100.0})
    eta.record("leq", 100, 50.0)  # its first chunk: the prior still holds
    assert eta.rate("leq") == pytest.approx(10.0)
    eta.record("leq", 100, 5.0)
    assert eta.rate("leq") == pytest.approx(20.0)
    assert eta.parts() == pytest.approx({"bc": 8.0, "leq": 40.0})


def test_evaluation_episodes_ahead_count_at_their_prior_then_their_measured_time():
    eta = PhaseEta({"bc": 0}, {}, eval_episodes=30, eval_seconds_per_episode=2.0)
    assert eta.parts() == pytest.approx({"evaluation": 60.0})
    eta.record_eval(10, 5.0)
    assert eta.parts() == pytest.approx({"evaluation": 10.0})
    assert duration(3725) == "1h02m" and duration(185) == "3m05s" and duration(42) == "42s"


def test_the_fit_reports_every_epoch_and_its_end():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = rng.normal(size=(400, 3)).astype(np.float32)
    config = EnsembleConfig(
        hidden_sizes=(8,), weight_decays=(1e-4, 1e-4), num_members=3, num_elites=2, max_epochs=3
    )
    epochs: list[FitEpoch] = []
    fit_ensemble(x, y, jax.random.PRNGKey(0), config, progress=epochs.append)
    assert [e.epoch for e in epochs] == [1, 2, 3, 3] and epochs[-1].done
    assert [e.most_left for e in epochs[:-1]] == [2, 1, 0]
    assert all("holdout mse" in e.summary and "elites [" in e.summary for e in epochs)
    lines: list[str] = []
    show = FitProgress(lines.append)
    for epoch in epochs:
        show(epoch)
    assert lines[0].startswith("world model: epoch 1: holdout mse") and "s/epoch" in lines[0]
    assert lines[-1].startswith("world model: trained in 3 epochs")
