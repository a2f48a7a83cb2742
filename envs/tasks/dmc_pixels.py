"""dm_control suite tasks from pixels, as V-D4RL recorded them, behind the gymnasium API.

Each agent step repeats the action for `action_repeat` (2) control steps and sums their rewards,
so an episode is 1000 / 2 = 500 agent steps (V-D4RL's files hold 501 frames: the reset frame
and one per step). Observations are dicts: {"image": uint8 [size, size, 3]} from camera 0
(camera 2 for quadruped, as DreamerV2's wrapper that V-D4RL used), 64x64 by default (84x84 as
an option: `<task>-pixels84`), plus {"state": float32 [obs_dim]} (the suite's observation,
flattened as in envs/tasks/dmc.py) with `with_state=True`. No terminal states: the last step
is truncated.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from envs.tasks.dmc import DMC_EPISODE_STEPS, DMC_TASKS, DmcEnv
from envs.tasks.frames import ResizedFrames
from envs.tasks.rendering import FrameRenderer

ACTION_REPEAT = 2  # V-D4RL
IMAGE_SIZE = 64  # V-D4RL's 64px datasets; 84 for its 84px shards
PIXEL_SUFFIX = "-pixels"  # <task>-pixels: 64x64 frames
PIXEL84_SUFFIX = "-pixels84"  # <task>-pixels84: 84x84 frames (V-D4RL's 84px datasets)


def split_pixel_name(name: str) -> tuple[str, int]:
    """("walker-walk", 64) for "walker-walk-pixels", ("walker-walk", 84) for "...-pixels84"."""
    if name.endswith(PIXEL84_SUFFIX):
        return name.removesuffix(PIXEL84_SUFFIX), 84
    return name.removesuffix(PIXEL_SUFFIX), IMAGE_SIZE


CAMERA_IDS = {"quadruped": 2}  # DreamerV2's DMC wrapper; every other domain camera 0


class DmcPixelEnv(gym.Env):
    """A dm_control suite task (envs/tasks/dmc.py's DmcEnv, with its action repeat) whose
    observation is the rendered frame, and optionally the state."""

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
        self.render_mode = "rgb_array"
        self.with_state = with_state
        self._states = DmcEnv(domain, task, seed=seed, action_repeat=action_repeat)
        self.action_repeat = self._states.action_repeat
        camera = CAMERA_IDS.get(domain, 0)
        self._renderer = FrameRenderer(self.physics, image_size, camera, fast=fast_render)
        self.action_space = self._states.action_space
        fields = {"image": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)}
        if with_state:
            fields["state"] = self._states.observation_space
        self.observation_space = gym.spaces.Dict(fields)
        self._frame = None

    def _observation(self, state: np.ndarray) -> dict[str, np.ndarray]:
        self._frame = self._renderer.render()
        return {"image": self._frame, "state": state} if self.with_state else {"image": self._frame}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode; a seed reseeds the task's RandomState (initial-state sampling)."""
        super().reset(seed=seed)
        state, info = self._states.reset(seed=seed)
        return self._observation(state), info

    def step(self, action):
        """DmcEnv's step (action repeat, summed reward), then the frame of the new state."""
        state, reward, terminated, truncated, info = self._states.step(action)
        return self._observation(state), reward, terminated, truncated, info

    def render(self):
        """The last observed frame (what the agent saw)."""
        return self._frame

    @property
    def physics(self):
        """The dm_control physics (tests re-render frames from saved states)."""
        return self._states._env.physics

    def close(self):
        self._states.close()


def make_dmc_pixels(
    name: str,
    seed: int | None = None,
    image_size: int | None = None,
    action_repeat: int = ACTION_REPEAT,
    with_state: bool = False,
    fast_render: bool = False,
    resize_to: int | None = None,
    **_unused,
) -> gym.Env:
    """Build `<domain-task>-pixels` / `-pixels84` (500 steps of action repeat 2 by default,
    truncated); `image_size` overrides the name's frame size (the size it renders at);
    `resize_to` resizes the rendered frames as datasets are resized on loading (frames.py)."""
    base, size = split_pixel_name(name)
    image_size = size if image_size is None else image_size
    domain, task = DMC_TASKS[base]
    env = DmcPixelEnv(domain, task, seed, image_size, action_repeat, with_state, fast_render)
    steps = DMC_EPISODE_STEPS // env.action_repeat
    env.spec = EnvSpec(id=name, max_episode_steps=steps)
    if resize_to is not None and resize_to != image_size:
        env = ResizedFrames(env, resize_to)
    return gym.wrappers.TimeLimit(env, max_episode_steps=steps)
