"""Ground-truth termination functions used inside model rollouts.

Every function has the signature `done = fn(obs, action, next_obs)`, works on numpy arrays and on
jax arrays (also under `jax.jit`), accepts any number of leading batch dimensions and returns a
boolean array of shape `next_obs.shape[:-1]`. They read the raw (un-normalised) next observation
in the task's D4RL layout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

from envs.tasks.task import TerminationFn

# LEQ / CBOP AntMaze goal centres: D4RL's evaluation goal cell + the mean of its goal noise
# (U(0, 1) + U(0, 0.5) per coordinate, mean 0.75), in D4RL's antmaze coordinates.
ANTMAZE_GOAL_CENTERS: dict[str, tuple[float, float]] = {
    "antmaze-umaze": (0.75, 8.75),
    "antmaze-medium": (20.75, 20.75),
    "antmaze-large": (32.75, 24.75),
}
ANTMAZE_GOAL_RADIUS = 0.25  # LEQ's radius; CBOP uses 0.5, the env's own success test is 0.5


def _xp(x):
    """The array module of `x`: jax.numpy for jax arrays and tracers, numpy otherwise.

    Looked up through sys.modules so that numpy callers never pay for importing jax.
    """
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.Array):
        return jax.numpy
    return np


def hopper_termination(obs, action, next_obs):
    """Hopper: done unless finite, s'[1:] < 100, height > 0.7 and |angle| < 0.2.

    Reproduces the MOBILE/LEQ quirk `abs(s'[1:] < 100)`: only the upper bound is checked.
    """
    xp = _xp(next_obs)
    height, angle = next_obs[..., 0], next_obs[..., 1]
    alive = (
        xp.all(xp.isfinite(next_obs), axis=-1)
        & xp.all(next_obs[..., 1:] < 100, axis=-1)
        & (height > 0.7)
        & (xp.abs(angle) < 0.2)
    )
    return ~alive


def walker2d_termination(obs, action, next_obs):
    """Walker2d: done unless all |s'| < 100, 0.8 < height < 2.0 and -1 < angle < 1."""
    xp = _xp(next_obs)
    height, angle = next_obs[..., 0], next_obs[..., 1]
    alive = (
        xp.all((next_obs > -100) & (next_obs < 100), axis=-1)
        & (height > 0.8)
        & (height < 2.0)
        & (angle > -1.0)
        & (angle < 1.0)
    )
    return ~alive


def halfcheetah_termination(obs, action, next_obs):
    """HalfCheetah: done only if some |s'| >= 100 (the simulator itself never terminates)."""
    xp = _xp(next_obs)
    return ~xp.all((next_obs > -100) & (next_obs < 100), axis=-1)


def ant_termination(obs, action, next_obs):
    """Ant: done unless all finite and 0.2 <= height <= 1.0 (height = s'[0] in D4RL's layout)."""
    xp = _xp(next_obs)
    height = next_obs[..., 0]
    alive = xp.all(xp.isfinite(next_obs), axis=-1) & (height >= 0.2) & (height <= 1.0)
    return ~alive


def never_terminates(obs, action, next_obs):
    """Tasks without terminal states (maze2d, dm_control): always False."""
    xp = _xp(next_obs)
    return xp.zeros(next_obs.shape[:-1], dtype=bool)


def make_antmaze_termination(
    center: tuple[float, float], radius: float = ANTMAZE_GOAL_RADIUS
) -> TerminationFn:
    """AntMaze (LEQ): done iff the next (x, y) = s'[:2] lies strictly inside the goal circle."""
    cx, cy = float(center[0]), float(center[1])
    radius_sq = float(radius) ** 2

    def antmaze_termination(obs, action, next_obs):
        dx = next_obs[..., 0] - cx
        dy = next_obs[..., 1] - cy
        return dx * dx + dy * dy < radius_sq

    return antmaze_termination


TERMINATION_FNS: dict[str, Callable] = {
    "hopper": hopper_termination,
    "walker2d": walker2d_termination,
    "halfcheetah": halfcheetah_termination,
    "ant": ant_termination,
}
