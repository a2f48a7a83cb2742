"""dm_control suite tasks from pixels, as V-D4RL recorded them, behind the gymnasium API.

Each agent step repeats the action for `action_repeat` (2) control steps and sums their rewards,
so an episode is 1000 / 2 = 500 agent steps (V-D4RL's files hold 501 frames: the reset frame
and one per step). Observations are dicts: {"image": uint8 [size, size, 3]} from camera 0
(camera 2 for quadruped, as DreamerV2's wrapper that V-D4RL used), 64x64 by default (84x84 as an
option), plus {"state": float32 [obs_dim]} (the suite's observation, flattened as in
envs/tasks/dmc.py) with `with_state=True`. No terminal states: the last step is truncated.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from envs.tasks.dmc import DMC_EPISODE_STEPS, DMC_TASKS, flatten_observation
from envs.tasks.rendering import FrameRenderer

ACTION_REPEAT = 2  # V-D4RL
IMAGE_SIZE = 64  # V-D4RL's 64px datasets; 84 for its 84px shards
PIXEL_SUFFIX = "-pixels"
CAMERA_IDS = {"quadruped": 2}  # DreamerV2's DMC wrapper; every other domain camera 0


class DmcPixelEnv(gym.Env):
    """A dm_control suite task whose observation is the rendered frame (and optionally the
    state), actions in [-1, 1], `action_repeat` control steps per step."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        domain: str,
        task: str,
        seed: int | None = None,
        image_size: int = IMAGE_SIZE,
        action_repeat: int = ACTION_REPEAT,
        with_state: bool = False,
        fast_render: bool = False,
    ):
        from dm_control import suite

        self.render_mode = "rgb_array"
        self.action_repeat = int(action_repeat)
        self.with_state = with_state
        self._env = suite.load(domain, task, task_kwargs={"random": seed})
        self._renderer = FrameRenderer(
            self._env.physics, image_size, CAMERA_IDS.get(domain, 0), fast=fast_render
        )
        spec = self._env.action_spec()
        self._act_low = spec.minimum.astype(np.float64)
        self._act_high = spec.maximum.astype(np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        fields = {"image": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)}
        if with_state:
            dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            fields["state"] = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.observation_space = gym.spaces.Dict(fields)
        self._frame = None

    def _observation(self, time_step) -> dict[str, np.ndarray]:
        self._frame = self._renderer.render()
        obs = {"image": self._frame}
        if self.with_state:
            obs["state"] = flatten_observation(time_step.observation)
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode; a seed reseeds the task's RandomState (initial-state sampling)."""
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        return self._observation(self._env.reset()), {}

    def step(self, action):
        """`action_repeat` control steps with the action mapped onto the suite's bounds; the
        reward is their sum."""
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
        return self._observation(time_step), reward, terminated, truncated, {}

    def render(self):
        """The last observed frame (what the agent saw)."""
        return self._frame

    @property
    def physics(self):
        """The dm_control physics (tests re-render frames from saved states)."""
        return self._env.physics

    def close(self):
        self._env.close()


def make_dmc_pixels(
    name: str,
    seed: int | None = None,
    image_size: int = IMAGE_SIZE,
    action_repeat: int = ACTION_REPEAT,
    with_state: bool = False,
    fast_render: bool = False,
    **_unused,
) -> gym.Env:
    """Build `<domain-task>-pixels` (500 steps of action repeat 2 by default, truncated)."""
    domain, task = DMC_TASKS[name.removesuffix(PIXEL_SUFFIX)]
    env = DmcPixelEnv(domain, task, seed, image_size, action_repeat, with_state, fast_render)
    steps = DMC_EPISODE_STEPS // env.action_repeat
    env.spec = EnvSpec(id=name, max_episode_steps=steps)
    return gym.wrappers.TimeLimit(env, max_episode_steps=steps)
