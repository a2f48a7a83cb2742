"""Checkpoints: atomic writes, pruning, round trip, shape checks."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from agent import checkpoint


def _state(value: float):
    params = {"w": jnp.full((3, 2), value), "b": jnp.zeros(2)}
    return {
        "params": params,
        "opt": optax.adam(1e-3).init(params),
        "key": jnp.array([1, 2], jnp.uint32),
        "step": jnp.int32(7),
    }


def test_round_trip_restores_every_leaf(tmp_path):
    state = _state(1.5)
    checkpoint.save(tmp_path, 7, state)
    step, restored = checkpoint.load_latest(tmp_path, _state(0.0))
    assert step == 7
    np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
    np.testing.assert_array_equal(restored["key"], state["key"])
    assert restored["key"].dtype == np.uint32


def test_only_the_newest_are_kept_and_temporaries_are_ignored(tmp_path):
    for step in (1, 2, 3, 4):
        checkpoint.save(tmp_path, step, _state(step), keep=2)
    (tmp_path / ".tmp_ckpt_000000009_1").mkdir()  # what a crash mid-write leaves behind
    assert checkpoint.checkpoint_steps(tmp_path) == [3, 4]
    step, restored = checkpoint.load_latest(tmp_path, _state(0.0))
    assert step == 4 and float(restored["params"]["w"][0, 0]) == 4.0


def test_shape_mismatch_names_the_leaf(tmp_path):
    checkpoint.save(tmp_path, 1, _state(1.0))
    template = _state(0.0)
    template["params"]["w"] = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"\['params'\]\['w'\] has shape \(3, 2\)"):
        checkpoint.load_latest(tmp_path, template)


def test_no_checkpoint_gives_none(tmp_path):
    assert checkpoint.load_latest(tmp_path / "absent", _state(0.0)) is None
