"""D4RL's maze2d waypoint controller: grid paths, goal reaching, collector-style goal resampling."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.tasks.maze2d import U_MAZE, MazeLayout
from envs.tasks.maze2d_planner import WaypointPlanner, shortest_path

MAZES = ["maze2d-umaze", "maze2d-medium", "maze2d-large"]


def test_shortest_path_in_umaze():
    walls = MazeLayout.from_rows(U_MAZE).walls
    path = shortest_path(walls, (3, 1), (1, 1))
    assert path == [(3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    assert shortest_path(walls, (1, 2), (1, 2)) == [(1, 2)]
    with pytest.raises(ValueError):
        shortest_path(walls, (1, 1), (2, 2))  # a wall cell is unreachable


@pytest.mark.parametrize("name", MAZES)
def test_noiseless_planner_reaches_the_eval_goal_in_time(name):
    env = envs.make_env(name)
    maze = env.unwrapped
    limit = envs.get_task(name).max_episode_steps
    for seed in range(4):
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        planner = WaypointPlanner(maze.layout.walls)
        planner.set_goal(maze.goal)
        for _ in range(limit):
            action = planner.act(obs, rng)
            assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)
            obs, reward, *_ = env.step(action)
            if planner.reached(obs):
                break
        assert planner.reached(obs), f"{name} seed {seed}: stuck at {obs[:2]}"
        assert reward == 1.0


def test_planner_is_deterministic_given_rng():
    env = envs.make_env("maze2d-medium")
    maze = env.unwrapped

    def actions(seed):
        obs, _ = env.reset(seed=0)
        planner = WaypointPlanner(maze.layout.walls, noise_std=0.5)
        planner.set_goal(maze.goal)
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(50):
            out.append(planner.act(obs, rng))
            obs, *_ = env.step(out[-1])
        return np.stack(out)

    np.testing.assert_array_equal(actions(1), actions(1))
    assert not np.array_equal(actions(1), actions(2))


def test_noisy_collector_loop_keeps_reaching_new_goals():
    """D4RL's dataset loop: noisy actions, a new random goal whenever the planner arrives."""
    env = envs.make_env("maze2d-medium")
    maze = env.unwrapped
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    planner = WaypointPlanner(maze.layout.walls, noise_std=0.5)
    maze.set_goal(maze.sample_goal(rng))
    planner.set_goal(maze.goal)
    arrivals = 0
    for _ in range(3000):
        obs, *_ = env.step(planner.act(obs, rng))
        if planner.reached(obs):
            arrivals += 1
            maze.set_goal(maze.sample_goal(rng))
            planner.set_goal(maze.goal)
    assert arrivals >= 10
