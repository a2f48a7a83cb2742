"""The description of one task: how to build its simulator and how to score and terminate it."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

# done = termination_fn(obs, action, next_obs); works on numpy and jax arrays of shape
# [..., dim] and returns a boolean array of shape [...].
TerminationFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TaskSpec:
    """Everything the agent needs to know about a task.

    `make(seed, render)` returns a gymnasium.Env whose observations are flat float32 vectors in the
    D4RL layout of the task, whose actions lie in [-1, 1]^act_dim, and which applies the task's
    time limit (terminated = a true terminal state, truncated = the time limit).
    """

    name: str
    family: str  # "locomotion" | "maze2d" | "antmaze" | "dmc" | "dmc_pixels"
    obs_dim: int
    act_dim: int
    max_episode_steps: int
    ref_min_score: float
    ref_max_score: float
    termination_fn: TerminationFn
    make: Callable[..., gym.Env]
    image_shape: tuple[int, int, int] | None = None  # pixel tasks: the frame [H, W, 3] (uint8)
    fast_render: bool = False  # pixel tasks: frames drawn with the fast settings (below)

    @property
    def observation_fields(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """The observation as named arrays with shape and dtype: {"state": ((obs_dim,), "float32")}
        for state tasks, whose simulators return the flat vector (a consumer that wants the dict
        form wraps it under this name); {"image": ((H, W, 3), "uint8")} for pixel tasks, whose
        simulators return that dict."""
        if self.image_shape is not None:
            return {"image": (tuple(self.image_shape), "uint8")}
        return {"state": ((self.obs_dim,), "float32")}

    def at_image_size(self, size: int | None) -> TaskSpec:
        """This pixel task seen at `size` x `size` frames. Its datasets stay stored at the name's
        size and are resized on loading; its simulator renders at the name's size too and
        resizes each frame with the same function (envs/tasks/frames.py), so training and
        evaluation see the same pixels. None, the task's own size, or a state task: the task
        unchanged (a state task has no frames to resize)."""
        if size is None or self.image_shape is None or size == self.image_shape[0]:
            return self
        return dataclasses.replace(
            self,
            image_shape=(size, size, self.image_shape[2]),
            make=functools.partial(self.make, resize_to=size),
        )

    def with_fast_render(self, fast: bool) -> TaskSpec:
        """This pixel task drawn without multisampling, shadows and reflections when `fast`
        (envs/tasks/rendering.py; about 10-20x faster on a CPU, another look). Datasets built for
        it go to their own folders (pixel_datasets.vd4rl_folder), so frames of the two looks are
        never mixed. False or a state task: the task unchanged."""
        if not fast or self.image_shape is None:
            return self
        return dataclasses.replace(
            self, fast_render=True, make=functools.partial(self.make, fast_render=True)
        )

    def normalized_score(self, episode_return: float) -> float:
        """100 * (R - ref_min) / (ref_max - ref_min), the D4RL normalised score."""
        span = self.ref_max_score - self.ref_min_score
        return 100.0 * (episode_return - self.ref_min_score) / span
