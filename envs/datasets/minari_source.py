"""Load a locally stored Minari dataset into the raw dict of envs/datasets/d4rl_hdf5.py.

A Minari episode of T steps stores T + 1 observations, so per episode
observations = obs[:-1], next_observations = obs[1:], terminals = terminations,
timeouts = truncations. Episodes are concatenated in their stored order.

Dict observations (gymnasium-robotics PointMaze / AntMaze, which D4RL's Minari ports use) hold
`observation`, `achieved_goal` and `desired_goal`. D4RL's flat layouts are recovered as:
* `observation` alone when its width equals the task's obs_dim (maze2d: [x, y, vx, vy]);
* `achieved_goal` then `observation` when their widths add up to obs_dim (antmaze: the 2-d
  (x, y) followed by the 27 other qpos / qvel entries = D4RL's 29-d qpos + qvel order);
* `observation` alone when no obs_dim is given.
`desired_goal` is not part of a D4RL observation; it is kept as `infos/goal`. Any other widths
raise DatasetError naming the dataset, the keys and their widths.

Caveat: gymnasium-robotics mazes are centred at the origin, so Minari's maze datasets give x, y
in that frame, not in D4RL's (which our maze tasks use); no frame conversion is attempted here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from envs.datasets.d4rl_hdf5 import RawData, coerce_array, validate_raw
from envs.datasets.errors import DatasetError


def minari_root() -> Path:
    """The folder Minari keeps local datasets in: $MINARI_DATASETS_PATH or ~/.minari/datasets."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def resolve_minari(source: str | os.PathLike) -> Path:
    """Return the `data` folder (holding metadata.json) of a Minari dataset id or directory.

    `source` may be the dataset's `data` folder, the dataset folder containing `data/`, or an id
    such as "D4RL/pointmaze/umaze-v2" looked up under minari_root(). DatasetError when absent.
    """
    path = Path(source)
    for candidate in (path, path / "data"):
        if (candidate / "metadata.json").is_file():
            return candidate
    by_id = minari_root() / str(source) / "data"
    if (by_id / "metadata.json").is_file():
        return by_id
    raise DatasetError(
        f"{source}: not a Minari dataset directory, and no local Minari dataset with this id "
        f"under {minari_root()} (set MINARI_DATASETS_PATH; downloads are not available)"
    )


def is_minari_source(source: str | os.PathLike) -> bool:
    """True when `source` resolves to a local Minari dataset (see resolve_minari)."""
    try:
        resolve_minari(source)
    except DatasetError:
        return False
    return True


def flatten_observations(
    obs: Any, obs_dim: int | None, source: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """(flat observations [T, obs_dim], desired goal [T, g] or None) for one episode.

    Array observations pass through; dict observations follow the module docstring.
    """
    if not isinstance(obs, dict):
        return np.asarray(obs, np.float32), None
    if "observation" not in obs:
        raise DatasetError(f"{source}: dict observations without an 'observation' key: {list(obs)}")
    core = np.asarray(obs["observation"], np.float32)
    goal = obs.get("desired_goal")
    goal = None if goal is None else np.asarray(goal, np.float32)
    if obs_dim is None or core.shape[-1] == obs_dim:
        return core, goal
    achieved = obs.get("achieved_goal")
    if achieved is not None and core.shape[-1] + np.shape(achieved)[-1] == obs_dim:
        return np.concatenate([np.asarray(achieved, np.float32), core], axis=-1), goal
    widths = {k: np.shape(v)[-1] for k, v in obs.items()}
    raise DatasetError(
        f"{source}: observation widths {widths} cannot form the task's obs_dim {obs_dim} "
        "(expected 'observation' or 'achieved_goal'+'observation')"
    )


def _episode_arrays(episode: Any, obs_dim: int | None, source: str) -> dict[str, np.ndarray]:
    """Raw-layout arrays of one Minari EpisodeData (T steps, T + 1 observations)."""
    obs, goal = flatten_observations(episode.observations, obs_dim, source)
    steps = len(episode.rewards)
    if len(obs) != steps + 1:
        raise DatasetError(
            f"{source}: episode {episode.id} has {len(obs)} observations for {steps} steps "
            "(expected steps + 1)"
        )
    arrays = {
        "observations": obs[:-1],
        "next_observations": obs[1:],
        "actions": np.asarray(episode.actions, np.float32).reshape(steps, -1),
        "rewards": np.asarray(episode.rewards, np.float32),
        "terminals": np.asarray(episode.terminations, bool),
        "timeouts": np.asarray(episode.truncations, bool),
    }
    if goal is not None:
        arrays["infos/goal"] = goal[:-1]
    return arrays


def read_minari(source: str | os.PathLike, obs_dim: int | None = None) -> RawData:
    """Load a local Minari dataset (id or directory) into a validated raw dict.

    `obs_dim` (the task's) selects the flattening of dict observations (module docstring).
    Raises DatasetError naming the dataset for a missing, unreadable or malformed dataset.
    """
    import minari  # heavy import, only needed for this source

    data_path = resolve_minari(source)
    name = str(source)
    try:
        dataset = minari.MinariDataset(data_path)
        episodes = [_episode_arrays(ep, obs_dim, name) for ep in dataset.iterate_episodes()]
    except DatasetError:
        raise
    except Exception as err:  # minari / h5py / pyarrow raise many types for a damaged dataset
        reason = f"{type(err).__name__}: {err}"
        raise DatasetError(f"{name}: cannot read Minari dataset ({reason})") from err
    if not episodes:
        raise DatasetError(f"{name}: the Minari dataset holds no episodes")
    common = set.intersection(*(set(ep) for ep in episodes))  # infos/goal may be partial
    raw: RawData = {key: np.concatenate([ep[key] for ep in episodes]) for key in sorted(common)}
    for key in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts"):
        raw[key] = coerce_array(key, raw[key], name)
    raw["metadata"] = {
        "source": "minari",
        "dataset_id": dataset.id,
        "minari_version": dataset.minari_version,
        "total_episodes": len(episodes),
    }
    validate_raw(raw, name)
    return raw
