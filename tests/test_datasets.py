"""D4RL HDF5 and Minari sources, validation errors, dimension checks and the dataset cache."""

import gymnasium as gym
import h5py
import numpy as np
import pytest

from envs.datasets import (
    OfflineData,
    check_segment_lengths,
    dataset_path,
    ensure_dataset,
    load_dataset,
    load_task_dataset,
    loading,
)
from envs.datasets.d4rl_hdf5 import read_d4rl_hdf5, write_d4rl_hdf5
from envs.datasets.errors import DatasetError
from envs.datasets.minari_source import flatten_observations, read_minari
from envs.tasks.task import TaskSpec


def never_done(obs, act, next_obs):
    return np.zeros(np.shape(obs)[:-1], bool)


def gym_task(env_id: str, name: str, family: str, obs_dim: int, act_dim: int, steps: int):
    """A TaskSpec over a plain gymnasium env (keeps these tests independent of envs.get_task)."""

    def make(seed=None, render=False):
        return gym.make(env_id, max_episode_steps=steps)

    return TaskSpec(name, family, obs_dim, act_dim, steps, 0.0, 1.0, never_done, make)


HOPPER = gym_task("Hopper-v5", "hopper", "locomotion", 11, 3, 100)


def raw_example(n: int = 40, obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> dict:
    """A random raw dict with terminals and timeouts (trajectories of 10 steps)."""
    rng = np.random.default_rng(seed)
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[9::20] = True
    timeouts[19::20] = True
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
    }


def write_raw_h5(path, arrays: dict) -> None:
    """Write arrays verbatim (no validation), to make deliberately broken files."""
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


# --------------------------------------------------------------------------------------------
# D4RL HDF5


def test_round_trip_with_infos_metadata_and_extra_keys(tmp_path):
    raw = raw_example()
    raw["infos/qpos"] = np.ones((40, 4), np.float32)
    raw["metadata"] = {"task": "toy", "size": 40, "ratio": 0.5, "shape": np.arange(3)}
    path = write_d4rl_hdf5(tmp_path / "sub" / "toy.hdf5", raw)
    assert path.is_file() and not list((tmp_path / "sub").glob("*.tmp"))
    with h5py.File(path, "a") as f:  # unknown keys, as real D4RL files carry
        f.create_dataset("weird_extra", data=np.zeros(7))
        f.create_group("other").create_dataset("x", data=np.zeros(3))
        f["metadata"].create_dataset("algorithm", data=b"SAC")  # D4RL style: a dataset
    back = read_d4rl_hdf5(path)
    for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(back[key], raw[key])
    assert "weird_extra" not in back and "infos/qpos" not in back
    assert back["metadata"]["task"] == "toy" and back["metadata"]["size"] == 40
    assert back["metadata"]["algorithm"] == "SAC"
    np.testing.assert_array_equal(back["metadata"]["shape"], np.arange(3))
    assert back["terminals"].dtype == bool and back["observations"].dtype == np.float32
    np.testing.assert_array_equal(read_d4rl_hdf5(path, include_infos=True)["infos/qpos"], 1.0)


def test_d4rl_file_loads_with_qlearning_semantics(tmp_path):
    raw = raw_example(obs_dim=11, act_dim=3)
    path = write_d4rl_hdf5(tmp_path / "hopper-medium-v2.hdf5", raw)
    data = load_task_dataset(HOPPER, {"path": str(path)})
    # 40 steps, timeouts at 19 and 39 (39 is also the last step): 38 transitions kept.
    assert len(data) == 38
    np.testing.assert_array_equal(data.observations, raw["observations"][np.r_[0:19, 20:39]])
    np.testing.assert_array_equal(data.next_observations[:18], raw["observations"][1:19])
    assert data.terminals.sum() == 2 and data.timeouts.sum() == 0
    assert data.info["quality"] == "unknown" and data.info["source"] == "d4rl_hdf5"
    assert data.reward_scale != 1.0  # non-random locomotion is rescaled
    assert data.info["path"] == str(path)


def test_next_observations_path_keeps_every_transition(tmp_path):
    raw = raw_example(obs_dim=11, act_dim=3)
    raw["next_observations"] = raw["observations"] + 1.0
    path = write_d4rl_hdf5(tmp_path / "hopper-random-v2.h5", raw)
    data = load_task_dataset(HOPPER, {"path": str(path), "reward_norm": "auto"})
    assert len(data) == 40
    np.testing.assert_array_equal(data.next_observations, raw["next_observations"])
    assert data.timeouts.sum() == 2 and data.terminals.sum() == 2
    assert data.episode_ends[-1] == 1 and data.info["quality"] == "random"
    assert data.reward_scale == 1.0  # random datasets keep raw rewards


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("missing_file", "no such file"),
        ("not_hdf5", "not a readable HDF5 file"),
        ("truncated", "not a readable HDF5 file"),
        ("missing_key", "missing required key 'timeouts'"),
        ("obs_1d", "'observations' has shape (40,)"),
        ("rewards_2d", "'rewards' has shape (40, 3)"),
        ("lengths", "'actions' (39, 2)"),
        ("nan_obs", "'observations' at index 7"),
        ("inf_reward", "'rewards' at index 3"),
    ],
)
def test_bad_files_raise_one_line_errors_naming_file_and_key(tmp_path, breakage, expected):
    path = tmp_path / f"{breakage}.hdf5"
    raw = raw_example()
    if breakage == "not_hdf5":
        path.write_text("observations,actions\n1,2\n")
    elif breakage == "truncated":
        write_d4rl_hdf5(path, raw)
        content = path.read_bytes()
        path.write_bytes(content[: len(content) // 2])
    elif breakage == "missing_key":
        del raw["timeouts"]
        write_raw_h5(path, raw)
    elif breakage == "obs_1d":
        raw["observations"] = raw["observations"][:, 0]
        write_raw_h5(path, raw)
    elif breakage == "rewards_2d":
        raw["rewards"] = np.zeros((40, 3), np.float32)
        write_raw_h5(path, raw)
    elif breakage == "lengths":
        raw["actions"] = raw["actions"][:-1]
        write_raw_h5(path, raw)
    elif breakage == "nan_obs":
        raw["observations"][7, 1] = np.nan
        write_raw_h5(path, raw)
    elif breakage == "inf_reward":
        raw["rewards"][3] = np.inf
        write_raw_h5(path, raw)
    with pytest.raises(DatasetError) as err:
        read_d4rl_hdf5(path)
    message = str(err.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_dimension_mismatch_names_file_key_and_shapes(tmp_path):
    path = write_d4rl_hdf5(tmp_path / "wrong.hdf5", raw_example(obs_dim=5, act_dim=3))
    with pytest.raises(DatasetError, match=r"wrong\.hdf5: key 'observations' has shape \(40, 5\)"):
        load_task_dataset(HOPPER, {"path": str(path)})
    path = write_d4rl_hdf5(tmp_path / "wrong_act.hdf5", raw_example(obs_dim=11, act_dim=2))
    with pytest.raises(DatasetError, match=r"'actions' has shape \(40, 2\).*\[N, 3\]"):
        load_task_dataset(HOPPER, {"path": str(path)})


def test_unknown_path_and_bad_options(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_task_dataset(HOPPER, {"path": str(tmp_path / "nothing-here")})
    with pytest.raises(DatasetError, match="reward_norm"):
        load_task_dataset(HOPPER, {"path": "x.hdf5", "reward_norm": "minmax"})


# --------------------------------------------------------------------------------------------
# Minari


def make_minari_dataset(env: gym.Env, dataset_id: str, steps: int, seed: int = 0) -> None:
    """Record `steps` random steps of `env` as a local Minari dataset."""
    import minari

    collector = minari.DataCollector(env)
    collector.reset(seed=seed)
    collector.action_space.seed(seed)
    for _ in range(steps):
        _, _, terminated, truncated, _ = collector.step(collector.action_space.sample())
        if terminated or truncated:
            collector.reset()
    with pytest.warns(UserWarning):  # minari nags about missing author / permalink / description
        collector.create_dataset(dataset_id=dataset_id, algorithm_name="random")
    collector.close()


def test_minari_local_dataset_by_id_and_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    make_minari_dataset(gym.make("Hopper-v5", max_episode_steps=25), "test/hopper/tiny-v0", 120)
    import minari

    episodes = list(minari.load_dataset("test/hopper/tiny-v0").iterate_episodes())
    raw = read_minari("test/hopper/tiny-v0", obs_dim=11)
    assert len(raw["rewards"]) == sum(len(ep) for ep in episodes) == 120
    first = episodes[0]
    steps = len(first)
    expected = first.observations.astype(np.float32)  # Hopper-v5 emits float64
    np.testing.assert_array_equal(raw["observations"][:steps], expected[:-1])
    np.testing.assert_array_equal(raw["next_observations"][:steps], expected[1:])
    assert raw["terminals"].sum() == sum(ep.terminations.sum() for ep in episodes)
    assert raw["timeouts"].sum() == sum(ep.truncations.sum() for ep in episodes)
    assert raw["timeouts"][-1] or raw["terminals"][-1]

    by_dir = read_minari(tmp_path / "minari" / "test" / "hopper" / "tiny-v0")
    np.testing.assert_array_equal(by_dir["actions"], raw["actions"])

    data = load_task_dataset(HOPPER, {"path": "test/hopper/tiny-v0"})
    assert len(data) == 120 and data.info["source"] == "minari"
    assert data.episode_ends.sum() == len(episodes)

    with pytest.raises(DatasetError, match="test/hopper/missing-v0"):
        read_minari("test/hopper/missing-v0")


def test_minari_dict_observations_point_maze(tmp_path, monkeypatch):
    gym.register_envs(__import__("gymnasium_robotics"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = gym.make("PointMaze_UMaze-v3", max_episode_steps=30)
    make_minari_dataset(env, "test/pointmaze/tiny-v0", 70)
    raw = read_minari("test/pointmaze/tiny-v0", obs_dim=4)
    assert raw["observations"].shape == (70, 4) and raw["infos/goal"].shape == (70, 2)
    # achieved_goal is the ball's (x, y), which the maze2d observation already starts with
    wide = read_minari("test/pointmaze/tiny-v0", obs_dim=6)
    np.testing.assert_array_equal(wide["observations"][:, 2:], raw["observations"])
    np.testing.assert_allclose(wide["observations"][:, :2], raw["observations"][:, :2])
    with pytest.raises(DatasetError, match=r"tiny-v0: observation widths .* obs_dim 5"):
        read_minari("test/pointmaze/tiny-v0", obs_dim=5)


def test_flatten_observations_rules():
    obs = {
        "observation": np.ones((3, 27)),
        "achieved_goal": np.zeros((3, 2)),
        "desired_goal": np.full((3, 2), 7.0),
    }
    flat, goal = flatten_observations(obs, 29, "ant")
    assert flat.shape == (3, 29) and (flat[:, :2] == 0).all() and (goal == 7).all()
    flat, _ = flatten_observations(obs, 27, "ant")
    assert flat.shape == (3, 27)
    flat, goal = flatten_observations(np.ones((3, 4)), 4, "plain")
    assert flat.dtype == np.float32 and goal is None


# --------------------------------------------------------------------------------------------
# Locally built datasets and the cache


def test_built_dataset_is_cached_and_reused(tmp_path, monkeypatch, capsys):
    cfg = {"path": None, "quality": "auto", "size": 300, "seed": 3, "dir": str(tmp_path)}
    first = load_task_dataset(HOPPER, cfg)
    out = capsys.readouterr().out
    path = tmp_path / "hopper-random-n300-s3.hdf5"
    assert f"dataset: building {path}" in out and path.is_file()
    assert first.info["quality"] == "random" and first.info["path"] == str(path)
    assert first.info["metadata"]["seed"] == 3 and first.info["n_episodes"] >= 3

    def fail(*args, **kwargs):
        raise AssertionError("the cached dataset was rebuilt")

    monkeypatch.setattr(loading, "collect_task", fail)
    second = load_task_dataset(HOPPER, cfg)
    assert capsys.readouterr().out.strip() == f"dataset: reusing {path}"
    np.testing.assert_array_equal(first.observations, second.observations)
    np.testing.assert_array_equal(first.rewards, second.rewards)


def test_unavailable_quality_fails_before_building(tmp_path, capsys):
    cfg = {"size": 100, "dir": str(tmp_path), "quality": "planner"}
    with pytest.raises(DatasetError, match=r"hopper: quality not available 'planner' .*random"):
        load_task_dataset(HOPPER, cfg)
    assert capsys.readouterr().out == "" and not list(tmp_path.iterdir())


def test_load_dataset_by_task_name(tmp_path, capsys):
    data = load_dataset("maze2d-umaze", {"size": 500, "seed": 1, "dir": str(tmp_path)})
    assert capsys.readouterr().out.startswith("dataset: building")
    assert len(data) == 500 and data.info["quality"] == "planner"
    assert data.observations.shape == (500, 4) and data.reward_scale == 1.0
    path = dataset_path("maze2d-umaze", {"size": 500, "seed": 1, "dir": str(tmp_path)})
    assert path == tmp_path / "maze2d-umaze-planner-n500-s1.hdf5" and path.is_file()
    assert ensure_dataset("maze2d-umaze", {"size": 500, "seed": 1, "dir": str(tmp_path)}) == path
    assert capsys.readouterr().out.strip() == f"dataset: reusing {path}"


def test_defaults_come_from_configs_defaults_yaml():
    from ruamel.yaml import YAML

    tree = YAML(typ="safe").load(loading.DEFAULTS_FILE.read_text())
    assert loading.DEFAULTS_FILE.name == "defaults.yaml"
    assert loading.dataset_defaults() == tree["dataset"]
    d = tree["dataset"]
    expected = f"{d['dir']}/hopper-random-n{d['size']}-s{d['seed']}.hdf5"
    assert str(dataset_path("hopper", {})) == expected  # every key from the file


# --------------------------------------------------------------------------------------------
# Trajectory segment lengths against a method's horizon cap (max_step)


def test_segment_length_check_names_file_length_and_limit(tmp_path):
    n = 40
    raw = raw_example(n=n, obs_dim=11, act_dim=3)
    raw["terminals"][:] = False
    raw["timeouts"][:] = False  # one trajectory: its n - 1 transitions are contiguous
    path = write_d4rl_hdf5(tmp_path / "long-random.hdf5", raw)  # random: rewards unscaled
    data = load_task_dataset(HOPPER, {"path": str(path)})
    assert len(data) == n - 1 and data.longest_segment == n - 1
    check_segment_lengths(data, None, "vem")
    check_segment_lengths(data, n - 1, "vem")
    message = (
        rf"^{path}: a trajectory segment has {n - 1} steps, more than vem's horizon cap "
        rf"max_step={n - 2} .*within {n - 2} steps$"
    )
    with pytest.raises(DatasetError, match=message):
        check_segment_lengths(data, n - 2, "vem")
    with pytest.raises(DatasetError, match=r"has 39 steps \(\+1 sentinel row\).*max_step=39"):
        check_segment_lengths(data, n - 1, "gem", end_sentinel=True)


def test_longest_segment_counts_terminals_gaps_and_the_last_row(tmp_path):
    path = write_d4rl_hdf5(tmp_path / "d4rl.h5", raw_example(obs_dim=11, act_dim=3))
    # terminals at 9 and 29 are kept, the timeout rows 19 and 39 are dropped (so 18 -> 20 is a
    # gap): segments 0..9, 10..18, 19..28 and 29..37 of the 38 transitions
    assert load_task_dataset(HOPPER, {"path": str(path)}).longest_segment == 10
    raw = raw_example(obs_dim=11, act_dim=3)
    raw["next_observations"] = raw["observations"] + 1.0  # every row ends at a gap
    path = write_d4rl_hdf5(tmp_path / "gaps.hdf5", raw)
    assert load_task_dataset(HOPPER, {"path": str(path)}).longest_segment == 1
    rows = np.zeros((0, 1), np.float32)
    flags = np.zeros(0, np.float32)
    empty = OfflineData(rows, rows, flags, rows, flags, flags, flags)
    assert empty.longest_segment == 0
    check_segment_lengths(empty, 1, "vem")
