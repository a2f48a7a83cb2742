"""Where the rows come from: an offline dataset, or an environment the runner steps.

`offline_replay` turns a dataset into the replay layout (observations as typed fields) and
places it on the device, or on the host when it is too large (`replay.placement`).
`EpisodeRunner` steps the training simulator for online runs and can bring it back to the exact
state of a checkpoint: training episodes are reset with seed TRAIN_SEED_OFFSET +
100,000 * seed + episode index, so on resume it resets the episode in progress and replays its
stored actions (MuJoCo and dm_control are deterministic), checking the last observation.
"""

from __future__ import annotations

import jax
import numpy as np

import envs
from agent import replay as replay_lib
from agent.config import Config, ConfigError
from agent.observations import STATE, observation_stats
from agent.protocol import Context, Field, Spec

TRAIN_SEED_OFFSET = 1_000_000  # training resets; evaluation uses 10,000 + 100 * seed + i
PLACEMENTS = ("auto", "device", "host")


def config_task(cfg: Config) -> envs.TaskSpec:
    """The task of a run, seen at `cfg.image_size` and drawn with the fast settings when
    `cfg.fast_render`, if it is a pixel task (TaskSpec.at_image_size, TaskSpec.with_fast_render;
    the RSSM's CNN needs 8, 16, 32, 64 ... px)."""
    task = envs.get_task(cfg.task).with_fast_render(cfg.fast_render)
    return task.at_image_size(cfg.image_size)


def task_spec(task) -> Spec:
    """The agent-side description of a task, from its typed observation fields."""
    fields = {
        name: Field(tuple(shape), np.dtype(dtype))
        for name, (shape, dtype) in task.observation_fields.items()
    }
    return Spec(fields, task.act_dim, task.max_episode_steps)


def as_obs(raw) -> dict:
    """An observation, or a dataset's [N, ...] observations, as typed fields: a flat state
    becomes {"state": float32}; a dict (pixel tasks: {"image": uint8}) keeps its fields."""
    if isinstance(raw, dict):
        return raw
    return {STATE: np.asarray(raw, np.float32)}


def dataset_arrays(data) -> dict:
    """An `OfflineData` in the replay layout (observation fields typed, the rest float32)."""
    f32 = lambda x: np.asarray(x, np.float32)
    return {
        "observations": as_obs(data.observations),
        "next_observations": as_obs(data.next_observations),
        "actions": f32(data.actions),
        "rewards": f32(data.rewards),
        "masks": f32(data.masks),
        "timeouts": f32(data.timeouts),
        "episode_ends": f32(data.episode_ends),
    }


def offline_context(task, spec: Spec, data) -> Context:
    """Statistics of the dataset that the agents and world models need."""
    mean, std = observation_stats(as_obs(data.observations), spec)
    return Context(
        obs_mean=mean,
        obs_std=std,
        reward_scale=float(data.reward_scale),
        reward_bias=float(data.reward_bias),
        data_size=len(data),
        termination_fn=task.termination_fn,
    )


def online_context(task, spec: Spec) -> Context:
    mean, std = observation_stats(None, spec)
    return Context(obs_mean=mean, obs_std=std, termination_fn=task.termination_fn)


def place_replay(cfg: Config, arrays: dict, device_only: bool):
    """A device `Replay`, or a `HostReplay` when `replay.placement` (or its size under `auto`)
    says the data stays on the host. device_only: the agent reads the whole replay on device."""
    placement = cfg.replay.placement
    if placement not in PLACEMENTS:
        raise ConfigError(f"replay.placement='{placement}' is not one of: {', '.join(PLACEMENTS)}")
    nbytes = sum(x.nbytes for x in jax.tree.leaves(arrays))
    host = placement == "host" or (
        placement == "auto" and nbytes > cfg.replay.device_limit_mb * 2**20 and not device_only
    )
    if host and device_only:
        raise ConfigError(
            f"replay.placement=host: method '{cfg.method}' reads the whole dataset on the device"
        )
    return replay_lib.HostReplay(arrays) if host else replay_lib.full(arrays)


def reset_seed(seed: int, episode: int) -> int:
    return TRAIN_SEED_OFFSET + 100_000 * seed + episode


class EpisodeRunner:
    """The training simulator and the counters of the episode in progress."""

    def __init__(self, cfg: Config, counters: dict) -> None:
        self.seed = cfg.seed
        self.env = config_task(cfg).make()
        self.episode = int(counters["episode"])
        self.steps = int(counters["episode_steps"])
        self.ret = float(counters["episode_return"])
        self.finished: list[tuple[float, int]] = []  # (return, length) since the last log
        self.obs = self._reset()

    def _reset(self) -> dict:
        obs, _ = self.env.reset(seed=reset_seed(self.seed, self.episode))
        return as_obs(obs)

    def replay_episode(self, replay: replay_lib.Replay) -> None:
        """Bring the simulator back to the end of the stored episode in progress."""
        if not self.steps:
            return
        data = replay.data
        rows = (int(replay.cursor) - self.steps + np.arange(self.steps)) % replay.capacity
        actions = np.asarray(data["actions"])
        for i in rows:
            obs, *_ = self.env.step(actions[i])
        self.obs = as_obs(obs)
        stored = {k: np.asarray(v[rows[-1]]) for k, v in data["next_observations"].items()}
        if any(not np.array_equal(self.obs[k], stored[k]) for k in stored):
            raise RuntimeError(
                "resume: replaying the stored episode did not reproduce its last observation "
                "(is the simulator deterministic?)"
            )

    def step(self, action: np.ndarray, rows: dict, i: int) -> None:
        """One environment step, written into row i of the chunk's host rows."""
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        next_obs = as_obs(next_obs)
        for k in rows["observations"]:
            rows["observations"][k][i] = self.obs[k]
            rows["next_observations"][k][i] = next_obs[k]
        rows["actions"][i] = action
        rows["rewards"][i] = reward
        rows["masks"][i] = 0.0 if terminated else 1.0  # truncation is not a terminal
        rows["timeouts"][i] = float(truncated and not terminated)
        rows["episode_ends"][i] = float(terminated or truncated)
        self.steps += 1
        self.ret += float(reward)
        self.obs = next_obs
        if terminated or truncated:
            self.finished.append((self.ret, self.steps))
            self.episode, self.steps, self.ret = self.episode + 1, 0, 0.0
            self.obs = self._reset()

    def counters(self) -> dict:
        return {
            "episode": self.episode,
            "episode_steps": self.steps,
            "episode_return": self.ret,
        }

    def pop_finished(self) -> dict:
        if not self.finished:
            return {}
        returns, lengths = zip(*self.finished, strict=True)
        self.finished = []
        return {
            "train/episode_return": float(np.mean(returns)),
            "train/episode_length": float(np.mean(lengths)),
            "train/episodes": float(self.episode),
        }

    def close(self) -> None:
        self.env.close()
