"""Dataset collection in the real simulators: determinism, episode bookkeeping, behaviours."""

import gymnasium as gym
import numpy as np
import pytest

from envs import behaviour, get_task
from envs.behaviour import available_qualities, make_behaviour, register_behaviour
from envs.collect import GENERATOR_VERSION, collect, collect_task
from envs.errors import DatasetError
from envs.task import TaskSpec


def never_done(obs, act, next_obs):
    return np.zeros(np.shape(obs)[:-1], bool)


def gym_task(env_id, name, family, obs_dim, act_dim, steps) -> TaskSpec:
    """A TaskSpec over a plain gymnasium env (independent of envs.get_task)."""

    def make(seed=None, render=False):
        return gym.make(env_id, max_episode_steps=steps)

    return TaskSpec(name, family, obs_dim, act_dim, steps, 0.0, 1.0, never_done, make)


HOPPER = gym_task("Hopper-v5", "hopper", "locomotion", 11, 3, 1000)
CHEETAH = gym_task("HalfCheetah-v5", "halfcheetah", "locomotion", 17, 6, 50)
UMAZE = get_task("maze2d-umaze")

ARRAY_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


def assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        if key != "metadata":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_same_seed_same_data_different_seed_different_data():
    first = collect_task(HOPPER, "random", 600, seed=5, progress=False)
    assert_same(first, collect_task(HOPPER, "random", 600, seed=5, progress=False))
    other = collect_task(HOPPER, "random", 600, seed=6, progress=False)
    assert not np.array_equal(first["actions"], other["actions"])
    assert not np.array_equal(first["observations"][0], other["observations"][0])


def test_terminal_episodes_and_the_final_cut():
    raw = collect_task(HOPPER, "random", 700, seed=0, progress=False)
    assert all(len(raw[k]) == 700 for k in ARRAY_KEYS)
    assert raw["terminals"].sum() > 5  # random hopper falls within tens of steps
    assert raw["terminals"][-1] or raw["timeouts"][-1]
    assert not (raw["terminals"] & raw["timeouts"]).any()
    # within an episode next_obs[i] is obs[i + 1]; after an end the simulator was reset
    ends = raw["terminals"] | raw["timeouts"]
    gaps = np.linalg.norm(raw["observations"][1:] - raw["next_observations"][:-1], axis=1)
    assert (gaps[~ends[:-1]] == 0).all() and (gaps[ends[:-1]] > 0).all()
    assert raw["actions"].min() >= -1 and raw["actions"].max() <= 1
    meta = raw["metadata"]
    assert (meta["task"], meta["quality"], meta["seed"], meta["size"]) == (
        "hopper",
        "random",
        0,
        700,
    )
    assert meta["generator_version"] == GENERATOR_VERSION


def test_time_limit_gives_timeouts_not_terminals():
    raw = collect_task(CHEETAH, "random", 175, seed=1, progress=False)
    assert raw["terminals"].sum() == 0
    # truncated every 50 steps, plus the final step cut by the size limit
    np.testing.assert_array_equal(np.flatnonzero(raw["timeouts"]), [49, 99, 149, 174])


def test_maze2d_planner_is_one_continuing_run_cut_at_goals():
    raw = collect_task(UMAZE, "planner", 2500, seed=0, progress=False)
    assert_same(raw, collect_task(UMAZE, "planner", 2500, seed=0, progress=False))
    # never reset, even past the 300-step time limit: next_obs[i] == obs[i + 1] throughout
    np.testing.assert_array_equal(raw["observations"][1:], raw["next_observations"][:-1])
    cuts = np.flatnonzero(raw["timeouts"])
    lengths = np.diff(np.r_[-1, cuts])
    assert len(cuts) >= 10 and lengths.max() <= 300 and raw["terminals"].sum() == 0
    goals = raw["infos/goal"]
    assert len(np.unique(goals.round(3), axis=0)) >= 5  # goals resampled on arrival
    # at each cut the particle is at its goal (or the segment hit the time limit)
    xy = raw["next_observations"][cuts[:-1], :2]
    near = np.linalg.norm(xy - np.round(goals[cuts[:-1]]), axis=1) < 0.1
    assert (near | (lengths[:-1] == 300)).all()
    # rewards are the environment's: 1 within 0.5 of the evaluation goal, cell (1, 1)
    at_eval_goal = np.linalg.norm(raw["next_observations"][:, :2] - [1.0, 1.0], axis=1) <= 0.5
    np.testing.assert_array_equal(raw["rewards"], at_eval_goal.astype(np.float32))
    assert raw["metadata"]["continuing"] is True


def test_maze2d_expert_episodes_reach_the_evaluation_goal():
    raw = collect_task(UMAZE, "expert", 1500, seed=0, progress=False)
    assert "continuing" not in raw["metadata"] or raw["metadata"]["continuing"] is False
    ends = np.flatnonzero(raw["timeouts"])
    assert np.diff(np.r_[-1, ends]).tolist() == [300] * 5  # ordinary 300-step episodes
    rewards = raw["rewards"].reshape(5, 300)
    # The planner reaches the goal in every episode and stays there: most late steps pay 1.
    assert (rewards.sum(axis=1) > 0).all()
    assert rewards[:, -50:].mean() > 0.8
    random_raw = collect_task(UMAZE, "random", 1500, seed=0, progress=False)
    assert raw["rewards"].sum() > 3 * random_raw["rewards"].sum()


def test_unknown_or_unavailable_quality_lists_the_available_ones(monkeypatch, tmp_path):
    from envs import trained_policies

    monkeypatch.setattr(trained_policies, "POLICY_DIR", tmp_path)  # no trained policies
    assert available_qualities(HOPPER) == ["random"]
    assert available_qualities(UMAZE) == ["expert", "planner", "random"]
    with pytest.raises(
        DatasetError, match=r"hopper: quality not available 'expert' \(available: random\)"
    ):
        collect_task(HOPPER, "expert", 10, seed=0, progress=False)
    with pytest.raises(DatasetError, match=r"hopper: quality not available 'medium-expert'"):
        collect_task(HOPPER, "medium-expert", 10, seed=0, progress=False)
    with pytest.raises(DatasetError, match=r"hopper: unknown quality 'superb'"):
        collect_task(HOPPER, "superb", 10, seed=0, progress=False)
    env = HOPPER.make()
    with pytest.raises(DatasetError, match=r"quality not available 'planner'"):
        make_behaviour("planner", HOPPER, env, 0)
    env.close()


def test_registered_behaviour_is_used_by_the_collector(monkeypatch):
    monkeypatch.setattr(behaviour, "_REGISTRY", dict(behaviour._REGISTRY))

    def zero_factory(task, env, seed):
        return lambda obs, rng: np.zeros(task.act_dim, np.float32)

    register_behaviour("still", zero_factory, families=("locomotion",))
    raw = collect_task(CHEETAH, "still", 60, seed=0, progress=False)
    assert (raw["actions"] == 0).all() and raw["metadata"]["quality"] == "still"
    assert "still" not in available_qualities(UMAZE)


def test_collect_by_task_name():
    raw = collect("walker-walk", "random", 300, seed=2, progress=False)
    assert raw["observations"].shape == (300, 24) and raw["metadata"]["task"] == "walker-walk"
    assert raw["observations"].dtype == np.float32
