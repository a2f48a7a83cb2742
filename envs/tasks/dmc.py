"""dm_control suite tasks from states behind the gymnasium API.

Observations are the suite's observation dict flattened in its own key order (the order the
suite defines, e.g. walker: orientations, height, velocity) into one float32 vector. Episodes
last 1000 control steps (the suite's own limit), have no terminal states, and end with
`truncated=True`. dm_control is imported only when such an env is built.

`<task>-ar2` is the same task with V-D4RL's action repeat 2 (each step repeats the action for
two control steps and sums their rewards; 500 steps): the state twin of `<task>-pixels`, on
which the behaviour policies of the pixel datasets are trained, so that they act on the same
dynamics when the pixel datasets are collected.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

# name -> (domain, task)
DMC_TASKS: dict[str, tuple[str, str]] = {
    "walker-walk": ("walker", "walk"),
    "cheetah-run": ("cheetah", "run"),
    "cartpole-swingup": ("cartpole", "swingup"),
}
DMC_EPISODE_STEPS = 1000
REPEAT_SUFFIX = "-ar2"  # the action-repeat-2 twin of a task (module docstring)


def split_dmc_name(name: str) -> tuple[str, int]:
    """("walker-walk", 2) for "walker-walk-ar2", ("walker-walk", 1) for "walker-walk"."""
    if name.endswith(REPEAT_SUFFIX):
        return name.removesuffix(REPEAT_SUFFIX), 2
    return name, 1


def flatten_observation(observation: dict) -> np.ndarray:
    """Concatenate a dm_control observation dict (in its key order) into a float32 vector."""
    parts = [np.asarray(value, dtype=np.float32).ravel() for value in observation.values()]
    return np.concatenate(parts)


class DmcEnv(gym.Env):
    """A dm_control suite task with flat float32 observations and actions in [-1, 1]."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        domain: str,
        task: str,
        seed: int | None = None,
        render_mode: str | None = None,
        render_size: int = 64,
        action_repeat: int = 1,
    ):
        from dm_control import suite

        self.render_mode = render_mode
        self.action_repeat = int(action_repeat)
        self._render_size = render_size
        self._env = suite.load(domain, task, task_kwargs={"random": seed})
        spec = self._env.action_spec()
        self._act_low = spec.minimum.astype(np.float64)
        self._act_high = spec.maximum.astype(np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        obs_dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode; a seed reseeds the task's RandomState (initial-state sampling)."""
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        time_step = self._env.reset()
        return flatten_observation(time_step.observation), {}

    def step(self, action):
        """`action_repeat` control steps (one by default) with the action in [-1, 1] mapped
        affinely onto the suite's bounds; the reward is their sum."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        scaled = self._act_low + (action + 1.0) * 0.5 * (self._act_high - self._act_low)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(scaled)
            reward += float(time_step.reward or 0.0)
            if time_step.last():
                break
        terminated = bool(time_step.last() and time_step.discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        obs = flatten_observation(time_step.observation)
        return obs, reward, terminated, truncated, {}

    def render(self):
        """RGB uint8 image from camera 0 (render_mode='rgb_array')."""
        size = self._render_size
        return self._env.physics.render(height=size, width=size, camera_id=0)

    def close(self):
        self._env.close()


def make_dmc(
    name: str, seed: int | None = None, render: bool = False, render_size: int = 64
) -> gym.Env:
    """Build walker-walk / cheetah-run / cartpole-swingup (1000 steps, truncated at the end), or
    their `-ar2` twins (500 steps of action repeat 2)."""
    base, repeat = split_dmc_name(name)
    domain, task = DMC_TASKS[base]
    env = DmcEnv(
        domain,
        task,
        seed=seed,
        render_mode="rgb_array" if render else None,
        render_size=render_size,
        action_repeat=repeat,
    )
    steps = DMC_EPISODE_STEPS // repeat
    env.spec = EnvSpec(id=name, max_episode_steps=steps)
    return gym.wrappers.TimeLimit(env, max_episode_steps=steps)
