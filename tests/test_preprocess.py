"""Raw dict -> OfflineData: D4RL qlearning semantics, episode ends, action clip, reward maps."""

import numpy as np
import pytest

from envs.datasets.preprocess import (
    clip_actions,
    episode_ends,
    qlearning_transitions,
    reward_affine,
    to_offline_data,
    trajectory_returns,
)


def hand_made_raw(with_next: bool = False) -> dict:
    """Three trajectories in D4RL order: A ends terminal, B ends by timeout, C is cut by the end.

    A: steps 0-2 (obs 0, 1, 2; terminal at 2), B: steps 3-4 (obs 10, 11; timeout at 4),
    C: steps 5-6 (obs 20, 21).
    """
    obs = np.array([[0], [1], [2], [10], [11], [20], [21]], np.float32)
    raw = {
        "observations": obs,
        "actions": np.array([[0.5], [1.0], [-1.0], [0.0], [0.2], [0.3], [0.4]], np.float32),
        "rewards": np.array([1, 2, 3, 4, 5, 6, 7], np.float32),
        "terminals": np.array([0, 0, 1, 0, 0, 0, 0], bool),
        "timeouts": np.array([0, 0, 0, 0, 1, 0, 0], bool),
    }
    if with_next:
        # The true successors: the terminal and timeout steps have their own next states.
        raw["next_observations"] = np.array([[1], [2], [3], [11], [12], [21], [22]], np.float32)
    return raw


def test_qlearning_without_next_observations_drops_timeouts_and_last_step():
    tr = qlearning_transitions(hand_made_raw())
    # Kept steps: 0, 1, 2 (terminal kept), 3, 5; step 4 (timeout) and 6 (last) dropped.
    np.testing.assert_array_equal(tr["observations"][:, 0], [0, 1, 2, 10, 20])
    np.testing.assert_array_equal(tr["next_observations"][:, 0], [1, 2, 10, 11, 21])
    np.testing.assert_array_equal(tr["rewards"], [1, 2, 3, 4, 6])
    np.testing.assert_array_equal(tr["terminals"], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(tr["timeouts"], [0, 0, 0, 0, 0])
    assert tr["terminals"].dtype == np.float32


def test_qlearning_with_next_observations_keeps_every_step():
    raw = hand_made_raw(with_next=True)
    tr = qlearning_transitions(raw)
    np.testing.assert_array_equal(tr["observations"], raw["observations"])
    np.testing.assert_array_equal(tr["next_observations"], raw["next_observations"])
    np.testing.assert_array_equal(tr["timeouts"], [0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(tr["terminals"], [0, 0, 1, 0, 0, 0, 0])


def test_episode_ends_rule():
    tr = qlearning_transitions(hand_made_raw())
    ends = episode_ends(
        tr["observations"], tr["next_observations"], tr["terminals"], tr["timeouts"]
    )
    # terminal at kept index 2; index 3's next obs 11 != obs 20 of index 4; last always.
    np.testing.assert_array_equal(ends, [0, 0, 1, 1, 1])

    tr = qlearning_transitions(hand_made_raw(with_next=True))
    ends = episode_ends(
        tr["observations"], tr["next_observations"], tr["terminals"], tr["timeouts"]
    )
    np.testing.assert_array_equal(ends, [0, 0, 1, 0, 1, 0, 1])


def test_timeout_ends_a_trajectory_even_when_observations_continue():
    obs = np.arange(5, dtype=np.float32)[:, None]
    nxt = obs + 1  # one continuous run, as in D4RL's maze2d data
    timeouts = np.array([0, 1, 0, 0, 0], np.float32)
    ends = episode_ends(obs, nxt, np.zeros(5, np.float32), timeouts)
    np.testing.assert_array_equal(ends, [0, 1, 0, 0, 1])
    # a gap just above the tolerance is a new trajectory, one below is not
    nxt2 = nxt.copy()
    nxt2[2] += 2e-6
    nxt2[3] += 5e-7
    ends = episode_ends(obs, nxt2, np.zeros(5, np.float32), np.zeros(5, np.float32))
    np.testing.assert_array_equal(ends, [0, 0, 1, 0, 1])


def test_clip_actions():
    out = clip_actions(np.array([[-1.0, 1.0, 0.3, 2.0]], np.float32))
    np.testing.assert_allclose(out, [[-1 + 1e-5, 1 - 1e-5, 0.3, 1 - 1e-5]], rtol=0, atol=1e-7)


def test_trajectory_returns_and_locomotion_scale_by_hand():
    rewards = np.array([1, 2, 3, 4, 6], np.float32)
    ends = np.array([0, 0, 1, 1, 1], np.float32)
    np.testing.assert_array_equal(trajectory_returns(rewards, ends), [6, 4, 6])
    data = {"rewards": rewards, "episode_ends": ends}
    scale, bias = reward_affine("locomotion", "medium", data, "auto")
    assert scale == pytest.approx(1000.0 / (6 - 4)) and bias == 0.0


def test_reward_affine_per_family_and_mode():
    data = {"rewards": np.array([0.0, 1.0, 5.0]), "episode_ends": np.array([0, 1, 1])}
    assert reward_affine("locomotion", "random", data, "auto") == (1.0, 0.0)
    assert reward_affine("locomotion", "hopper-random-v2", data, "auto") == (1.0, 0.0)
    assert reward_affine("locomotion", "medium-replay", data, "none") == (1.0, 0.0)
    assert reward_affine("antmaze", "diverse", data, "auto") == (1.0, -1.0)
    assert reward_affine("antmaze", "diverse", data, "none") == (1.0, 0.0)
    assert reward_affine("maze2d", "planner", data, "auto") == (1.0, 0.0)
    assert reward_affine("dmc", "random", data, "auto") == (1.0, 0.0)
    with pytest.raises(ValueError):
        reward_affine("maze2d", "planner", data, "minmax")


def test_equal_returns_leave_rewards_unscaled_with_a_warning():
    data = {"rewards": np.array([1.0, 1.0]), "episode_ends": np.array([1, 1])}
    with pytest.warns(UserWarning, match="equal"):
        assert reward_affine("locomotion", "expert", data, "auto") == (1.0, 0.0)


def test_to_offline_data_applies_every_step():
    raw = hand_made_raw()
    data = to_offline_data(raw, "locomotion", "medium", "auto", info={"task": "toy"})
    assert len(data) == 5
    np.testing.assert_array_equal(data.episode_ends, [0, 0, 1, 1, 1])
    assert data.reward_scale == pytest.approx(500.0) and data.reward_bias == 0.0
    np.testing.assert_allclose(data.rewards, 500.0 * np.array([1, 2, 3, 4, 6]))
    assert data.actions.max() <= 1 - 1e-5 and data.actions.min() >= -1 + 1e-5
    assert data.info["task"] == "toy" and data.info["n_episodes"] == 3
    assert data.info["return_max"] == 6 and data.info["return_min"] == 4
    for name in ("observations", "actions", "rewards", "next_observations", "terminals"):
        assert getattr(data, name).dtype == np.float32

    ant = to_offline_data(raw, "antmaze", "diverse", "auto")
    np.testing.assert_allclose(ant.rewards, np.array([1, 2, 3, 4, 6]) - 1.0)
    assert (ant.reward_scale, ant.reward_bias) == (1.0, -1.0)
    # the input is not modified
    np.testing.assert_array_equal(raw["rewards"], [1, 2, 3, 4, 5, 6, 7])
