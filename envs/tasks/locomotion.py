"""Gymnasium MuJoCo v5 locomotion tasks with observations in D4RL's -v2 dataset layout."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

# D4RL's ant-v2 files were recorded with gym Ant-v3 under mujoco-py 2.x, which leaves
# data.cfrc_ext at zero: their 111-d observations are the 27-d state (qpos[2:], qvel) followed by
# 84 contact-force entries that are always 0. Ant-v5 without contact forces gives the same 27-d
# state; we append the 84 zeros so that policies and models trained on D4RL files run unchanged.
ANT_CONTACT_PAD = 84

# name -> (gymnasium id, extra constructor kwargs, observation dim in D4RL's layout)
LOCOMOTION_TASKS: dict[str, tuple[str, dict, int]] = {
    "hopper": ("Hopper-v5", {}, 11),
    "walker2d": ("Walker2d-v5", {}, 17),
    "halfcheetah": ("HalfCheetah-v5", {}, 17),
    "ant": ("Ant-v5", {"include_cfrc_ext_in_observation": False}, 27 + ANT_CONTACT_PAD),
}
LOCOMOTION_EPISODE_STEPS = 1000


class D4RLObservation(gym.ObservationWrapper):
    """Casts observations to float32 and appends `pad` zeros (D4RL's dead contact forces)."""

    def __init__(self, env: gym.Env, pad: int = 0):
        super().__init__(env)
        self._pad = pad
        dim = env.observation_space.shape[0] + pad
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float32)
        if self._pad:
            obs = np.concatenate([obs, np.zeros(self._pad, np.float32)])
        return obs


def make_locomotion(name: str, render: bool = False, render_size: int = 64) -> gym.Env:
    """Build hopper / walker2d / halfcheetah / ant (v5, 1000-step limit, float32 D4RL layout)."""
    env_id, kwargs, obs_dim = LOCOMOTION_TASKS[name]
    if render:
        kwargs = {**kwargs, "render_mode": "rgb_array", "width": render_size, "height": render_size}
    env = gym.make(env_id, max_episode_steps=LOCOMOTION_EPISODE_STEPS, **kwargs)
    pad = obs_dim - env.observation_space.shape[0]
    return D4RLObservation(env, pad=pad)
