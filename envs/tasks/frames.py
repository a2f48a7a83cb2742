"""Frames at another size: one resizing for pixel simulators and pixel datasets alike, so an
agent that sees a task at N x N gets the same pixels in training (a dataset resized on loading)
and in evaluation (the simulator's frames resized as they come)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from PIL import Image


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 frames [T, H, W, 3] to [T, size, size, 3] with PIL's bicubic filter.

    LEQ_DV3 resizes V-D4RL's 84px frames to 64 with OpenCV's INTER_CUBIC
    (`data/v-d4rl/hdf5_to_npz.py`); OpenCV is not installed here, and PIL's bicubic filter
    (a = -0.5, widened when shrinking, so it also anti-aliases) is the closest one: pixel values
    can differ from LEQ_DV3's by a few levels. Frames already at `size` are returned unchanged.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"resize_images: expected uint8 [T, H, W, 3], got {images.shape}")
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), np.uint8)
    for t, frame in enumerate(images):
        resized = Image.fromarray(frame).resize((size, size), Image.Resampling.BICUBIC)
        out[t] = np.asarray(resized)
    return out


class ResizedFrames(gym.ObservationWrapper):
    """A pixel env whose obs["image"] (and render()) is resized to size x size by
    `resize_images`, the function that resizes datasets on loading."""

    def __init__(self, env: gym.Env, size: int) -> None:
        super().__init__(env)
        self.size = size
        spaces = dict(env.observation_space.spaces)
        spaces["image"] = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, observation: dict) -> dict:
        return {**observation, "image": self._resize(observation["image"])}

    def render(self) -> np.ndarray:
        return self._resize(self.env.render())

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        return resize_images(frame[None], self.size)[0]
