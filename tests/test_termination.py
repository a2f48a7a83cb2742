"""Termination functions agree with the simulators on real rollouts; scores are D4RL's."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.tasks import scores, termination
from envs.tasks.antmaze import sample_goal


def _rollouts(name, policy, episodes, max_steps, seed=0):
    """Transitions (obs, action, next_obs, terminated) of `episodes` real episodes."""
    env = envs.make_env(name)
    rng = np.random.default_rng(seed)
    obs_list, act_list, next_list, term_list = [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        for _ in range(max_steps):
            action = policy(rng, env.action_space.shape[0])
            next_obs, _, terminated, truncated, _ = env.step(action)
            obs_list.append(obs)
            act_list.append(action)
            next_list.append(next_obs)
            term_list.append(terminated)
            if terminated or truncated:
                break
            obs = next_obs
    env.close()
    return (np.stack(obs_list), np.stack(act_list), np.stack(next_list), np.array(term_list))


def _uniform(rng, dim):
    return rng.uniform(-1.0, 1.0, dim).astype(np.float32)


def _bang_bang(rng, dim):
    # Random +-1 torques make the ant hop above z = 1 within tens of steps.
    return rng.choice([-1.0, 1.0], dim).astype(np.float32)


@pytest.mark.parametrize(
    "name,policy,episodes",
    [("hopper", _uniform, 20), ("walker2d", _uniform, 20), ("ant", _bang_bang, 15)],
)
def test_termination_matches_simulator(name, policy, episodes):
    obs, act, next_obs, terminated = _rollouts(name, policy, episodes, max_steps=1000)
    assert terminated.sum() >= episodes // 2  # the rollouts really reach terminal states
    done = envs.get_task(name).termination_fn(obs, act, next_obs)
    assert done.dtype == bool and done.shape == terminated.shape
    np.testing.assert_array_equal(done, terminated)
    # Per-transition calls and extra leading dimensions give the same answers.
    fn = envs.get_task(name).termination_fn
    assert bool(fn(obs[0], act[0], next_obs[0])) == terminated[0]
    n = (len(obs) // 2) * 2
    batched = fn(obs[:n].reshape(2, n // 2, -1), act[:n], next_obs[:n].reshape(2, n // 2, -1))
    np.testing.assert_array_equal(batched.reshape(-1), terminated[:n])


@pytest.mark.parametrize(
    "name,steps",
    [("halfcheetah", 1000), ("maze2d-umaze", 300), ("cheetah-run", 300), ("walker-walk", 300)],
)
def test_never_terminating_tasks(name, steps):
    obs, act, next_obs, terminated = _rollouts(name, _uniform, episodes=1, max_steps=steps)
    assert not terminated.any() and len(obs) == steps
    assert not envs.get_task(name).termination_fn(obs, act, next_obs).any()


def test_termination_fns_work_with_jax_under_jit():
    jax = pytest.importorskip("jax")
    obs, act, next_obs, terminated = _rollouts("hopper", _uniform, episodes=5, max_steps=1000)
    for name in ("hopper", "walker2d", "halfcheetah", "ant", "maze2d-large", "antmaze-umaze"):
        fn = envs.get_task(name).termination_fn
        width = envs.get_task(name).obs_dim
        rng = np.random.default_rng(0)
        batch = rng.normal(0.5, 0.6, (4, 8, width)).astype(np.float32)
        batch[..., :2] += np.array([0.75, 8.75], np.float32)  # some points near the umaze goal
        batch[0, 0, -1] = 150.0  # out of the locomotion state bounds
        expected = fn(batch, None, batch)
        got = jax.jit(lambda s, fn=fn: fn(s, None, s))(batch)
        assert got.dtype == bool and got.shape == (4, 8)
        np.testing.assert_array_equal(np.asarray(got), expected)
    hopper = envs.get_task("hopper").termination_fn
    np.testing.assert_array_equal(
        np.asarray(hopper(obs, act, jax.numpy.asarray(next_obs))), terminated
    )


def test_hopper_checks_only_the_upper_state_bound():
    healthy = np.zeros(11, np.float32)
    healthy[0] = 1.25
    fn = termination.hopper_termination
    assert not fn(None, None, healthy)
    low, high, tilted, short = (healthy.copy() for _ in range(4))
    low[5], high[5], tilted[1], short[0] = -150.0, 150.0, 0.25, 0.6
    assert not fn(None, None, low)  # the MOBILE / LEQ quirk
    assert fn(None, None, high) and fn(None, None, tilted) and fn(None, None, short)
    nan = healthy.copy()
    nan[3] = np.nan
    assert fn(None, None, nan)


def test_ant_height_bounds():
    fn = termination.ant_termination
    obs = np.zeros((4, 111), np.float32)
    obs[:, 0] = [0.1, 0.2, 1.0, 1.1]
    np.testing.assert_array_equal(fn(None, None, obs), [True, False, False, True])


@pytest.mark.parametrize("name", ["antmaze-umaze", "antmaze-medium", "antmaze-large"])
def test_antmaze_circle_is_centred_on_the_d4rl_goal_mean(name):
    maze = envs.make_env(name).unwrapped
    centre = np.array(termination.ANTMAZE_GOAL_CENTERS[name])
    goal_cell_xy = maze.layout.cell_xy(maze.layout.goal_cell)
    np.testing.assert_allclose(goal_cell_xy + 0.75, centre)
    rng = np.random.default_rng(0)
    goals = np.stack([sample_goal(maze.layout, rng) for _ in range(4000)])
    np.testing.assert_allclose(goals.mean(axis=0), centre, atol=0.03)
    fn = envs.get_task(name).termination_fn
    points = np.zeros((2, 3, 29), np.float32)
    points[..., :2] = centre
    points[0, 1, 0] += 0.2  # inside radius 0.25
    points[1, 0, 1] += 0.3  # outside
    points[1, 2, :2] += 0.2  # distance 0.28: outside
    np.testing.assert_array_equal(
        fn(None, None, points), [[True, True, True], [False, True, False]]
    )


def test_normalized_scores():
    hopper = envs.get_task("hopper")
    assert hopper.normalized_score(hopper.ref_max_score) == pytest.approx(100.0)
    assert hopper.normalized_score(hopper.ref_min_score) == pytest.approx(0.0)
    assert scores.normalized_score("hopper", 1607.0139) == pytest.approx(
        hopper.normalized_score(1607.0139)
    )
    expected = {
        "walker2d": (1.629008, 4592.3),
        "halfcheetah": (-280.178953, 12135.0),
        "ant": (-325.6, 3879.7),
        "maze2d-umaze": (23.85, 161.86),
        "maze2d-medium": (13.13, 277.39),
        "maze2d-large": (6.7, 273.99),
        "antmaze-large": (0.0, 1.0),
        "cartpole-swingup": (0.0, 1000.0),
    }
    for name, (low, high) in expected.items():
        task = envs.get_task(name)
        assert (task.ref_min_score, task.ref_max_score) == (low, high)
    assert envs.get_task("maze2d-large").normalized_score(140.345) == pytest.approx(50.0)
    assert envs.get_task("antmaze-medium").normalized_score(0.37) == pytest.approx(37.0)
    assert envs.get_task("walker-walk").normalized_score(500.0) == pytest.approx(50.0)
