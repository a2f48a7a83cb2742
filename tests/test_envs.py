"""Every task builds, steps, seeds and renders; maze coordinate transforms match D4RL's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import envs

EXPECTED_NAMES = (
    "hopper",
    "walker2d",
    "halfcheetah",
    "ant",
    "maze2d-umaze",
    "maze2d-medium",
    "maze2d-large",
    "antmaze-umaze",
    "antmaze-medium",
    "antmaze-large",
    "walker-walk",
    "cheetah-run",
    "cartpole-swingup",
    "walker-walk-ar2",
    "cheetah-run-ar2",
    "cartpole-swingup-ar2",
)
PIXEL_NAMES = tuple(
    f"{name}{suffix}"
    for name in ("walker-walk", "cheetah-run", "cartpole-swingup")
    for suffix in ("-pixels", "-pixels84")
)


def _rollout(env, actions, seed):
    obs, _ = env.reset(seed=seed)
    trajectory = [obs]
    for action in actions:
        obs, *_ = env.step(action)
        trajectory.append(obs)
    return np.stack(trajectory)


# --- registry ---
def test_task_names():
    assert set(envs.TASK_NAMES) == set(EXPECTED_NAMES + PIXEL_NAMES)
    assert len(envs.TASK_NAMES) == len(EXPECTED_NAMES + PIXEL_NAMES)


def test_unknown_task_lists_valid_names():
    with pytest.raises(KeyError) as info:
        envs.get_task("hopper-medium")
    message = str(info.value)
    assert "\n" not in message and "hopper-medium" in message
    assert all(name in message for name in EXPECTED_NAMES)


def test_import_is_light():
    code = (
        "import sys, envs; envs.get_task('walker-walk'); "
        "print('mujoco' in sys.modules, 'dm_control' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", EXPECTED_NAMES + PIXEL_NAMES)
def test_spec_fields(name):
    spec = envs.get_task(name)
    families = ("locomotion", "maze2d", "antmaze", "dmc", "dmc_pixels")
    assert spec.name == name and spec.family in families
    assert spec.ref_max_score > spec.ref_min_score
    assert callable(spec.termination_fn) and callable(spec.make)


# --- every env ---
@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_env_builds_steps_and_is_deterministic(name):
    spec = envs.get_task(name)
    env = envs.make_env(name, seed=0)
    assert env.observation_space.shape == (spec.obs_dim,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.shape == (spec.act_dim,)
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)
    assert env.spec.max_episode_steps == spec.max_episode_steps

    actions = np.random.default_rng(0).uniform(-1, 1, (5, spec.act_dim)).astype(np.float32)
    first = _rollout(env, actions, seed=7)
    again = _rollout(env, actions, seed=7)
    other = _rollout(env, actions, seed=8)
    assert first.shape == (6, spec.obs_dim) and first.dtype == np.float32
    assert np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[0], other[0])

    _, reward, terminated, truncated, info = env.step(actions[0])
    assert isinstance(reward, float) and isinstance(info, dict)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    env.close()


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_render_returns_small_rgb(name):
    env = envs.make_env(name, seed=0, render=True)
    env.step(env.action_space.sample())
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert frame.std() > 0  # not a blank image
    env.close()


@pytest.mark.parametrize("name,steps", [("maze2d-umaze", 300), ("cartpole-swingup", 1000)])
def test_time_limit_truncates(name, steps):
    env = envs.make_env(name, seed=0)
    zeros = np.zeros(env.action_space.shape, np.float32)
    for t in range(1, steps + 1):
        *_, terminated, truncated, _ = env.step(zeros)
        assert not terminated
        assert truncated == (t == steps)


# --- locomotion ---
def test_ant_pads_d4rl_contact_forces_with_zeros():
    env = envs.make_env("ant", seed=0)
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped._get_obs()  # Ant-v5 without contact forces: qpos[2:], qvel
    assert raw.shape == (27,)
    np.testing.assert_allclose(obs[:27], raw, rtol=1e-6)
    np.testing.assert_array_equal(obs[27:], 0.0)


# --- dm_control ---
def test_dmc_observation_is_suite_dict_in_order():
    env = envs.make_env("walker-walk", seed=0)
    obs, _ = env.reset(seed=0)
    suite_obs = env.unwrapped._env._task.get_observation(env.unwrapped._env.physics)
    assert list(suite_obs) == ["orientations", "height", "velocity"]
    expected = np.concatenate([np.ravel(v) for v in suite_obs.values()]).astype(np.float32)
    np.testing.assert_array_equal(obs, expected)


# --- maze2d ---
MAZE2D_GOALS = {"maze2d-umaze": (1, 1), "maze2d-medium": (6, 6), "maze2d-large": (7, 9)}


def _wall_geoms(model):
    """Positions (sim frame) of the maze's wall boxes."""
    ids = [g for g in range(model.ngeom) if model.geom(g).name.startswith("block_")]
    return model.geom_pos[ids, :2]


@pytest.mark.parametrize("name", list(MAZE2D_GOALS))
def test_maze2d_walls_sit_where_d4rl_has_them(name):
    maze = envs.make_env(name).unwrapped
    walls = maze.layout.walls
    centres = maze.d4rl_from_sim(_wall_geoms(maze.model))
    # D4RL: wall (i, j) is a unit box at world (i + 1, j + 1), the particle body at (1.2, 1.2).
    cells = np.rint(centres + 0.2).astype(int)
    np.testing.assert_allclose(centres, cells - 0.2, atol=1e-9)
    assert len(centres) == walls.sum()
    assert all(walls[i, j] for i, j in cells)
    assert maze.layout.goal_cell == MAZE2D_GOALS[name]
    np.testing.assert_array_equal(maze.goal, MAZE2D_GOALS[name])


@pytest.mark.parametrize("name", list(MAZE2D_GOALS))
def test_maze2d_reset_lands_in_free_cell(name):
    env = envs.make_env(name)
    layout = env.unwrapped.layout
    for seed in range(30):
        obs, _ = env.reset(seed=seed)
        cell = np.rint(obs[:2]).astype(int)
        assert layout.is_free(cell)
        assert np.all(np.abs(obs[:2] - cell) <= 0.1 + 1e-6)


def test_maze2d_particle_stops_at_d4rl_wall_faces():
    """Wall faces of U-maze cell row 1 lie at x = 0.3 and y = 3.3 in D4RL's frame (radius 0.1)."""
    env = envs.make_env("maze2d-umaze")
    env.reset(seed=0, options={"reset_cell": (1, 1)})
    for _ in range(150):
        obs, *_ = env.step(np.array([0.0, 1.0]))
    assert abs(obs[1] - 3.2) < 0.01
    for _ in range(150):
        obs, *_ = env.step(np.array([-1.0, -1.0]))
    assert abs(obs[0] - 0.4) < 0.01 and abs(obs[1] - 0.4) < 0.01


def test_maze2d_sparse_reward_and_set_goal():
    env = envs.make_env("maze2d-medium")
    obs, _ = env.reset(seed=0, options={"reset_cell": (6, 6)})
    _, reward, terminated, _, info = env.step(np.zeros(2))
    assert reward == 1.0 and info["success"] and not terminated
    maze = env.unwrapped
    maze.set_goal([1.0, 1.0])
    _, reward, *_ = env.step(np.zeros(2))
    assert reward == 0.0
    env.reset(seed=1)
    np.testing.assert_array_equal(maze.goal, [1.0, 1.0])  # goals persist across resets
    rng = np.random.default_rng(0)
    for _ in range(20):
        goal = maze.sample_goal(rng)  # D4RL's set_target(): free cell + U(-0.1, 0.1)
        cell = np.rint(goal).astype(int)
        assert maze.layout.is_free(cell) and np.all(np.abs(goal - cell) <= 0.1)


# --- antmaze ---
@pytest.mark.parametrize("name", ["antmaze-umaze", "antmaze-medium", "antmaze-large"])
def test_antmaze_walls_sit_where_d4rl_has_them(name):
    maze = envs.make_env(name).unwrapped
    layout = maze.layout
    centres = maze.d4rl_from_sim(_wall_geoms(maze.model))
    assert len(centres) == layout.walls.sum()
    for xy in centres:
        cell = layout.cell_of(xy)
        assert layout.walls[cell]
        # D4RL: block (i, j) at (4 j - 4 j_R, 4 i - 4 i_R), with the start cell R at (1, 1).
        np.testing.assert_allclose(xy, [4 * cell[1] - 4, 4 * cell[0] - 4], atol=1e-9)
    assert layout.start_cell == (1, 1)


@pytest.mark.parametrize("name", ["antmaze-umaze", "antmaze-large"])
def test_antmaze_reset_start_goal_and_physics(name):
    env = envs.make_env(name)
    maze = env.unwrapped
    goal_cell_xy = maze.layout.cell_xy(maze.layout.goal_cell)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert np.all(np.abs(obs[:2]) <= 0.1 + 1e-6)  # the start cell is D4RL's origin
        assert abs(obs[2] - 0.75) <= 0.1 + 1e-6
        offset = maze.goal - goal_cell_xy
        assert np.all((offset >= 0) & (offset <= 1.5))
    # D4RL's antmaze ant: 0.02 s timestep, torques up to 30 for actions in [-1, 1].
    assert maze.model.opt.timestep == pytest.approx(0.02)
    np.testing.assert_allclose(maze.model.actuator_gear[:, 0], 30.0)


def test_antmaze_terminates_on_success():
    env = envs.make_env("antmaze-umaze")
    obs, _ = env.reset(seed=0)
    env.unwrapped.set_goal(obs[:2] + np.array([0.3, 0.0]))
    _, reward, terminated, truncated, info = env.step(np.zeros(8))
    assert reward == 1.0 and terminated and not truncated and info["success"]
