"""The world-model interface that every agent drives (state ensemble now, pixel RSSM later)."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import jax

from envs.offline_data import OfflineData

Params = Any  # a pytree of arrays
LogFn = Callable[[int, dict], None]  # log(step, metrics)


class WorldModel(abc.ABC):
    """A learned one-step simulator used for imagination.

    The object holds only static configuration (dimensions, sizes); everything learned lives in the
    `params` pytree that `train` / `load` return, so `step` can be jitted and differentiated.
    """

    obs_dim: int
    act_dim: int

    @abc.abstractmethod
    def train(self, data: OfflineData, key: jax.Array, log: LogFn | None = None) -> Params:
        """Fit input normalisation, train to early stop and return the trained params."""

    @abc.abstractmethod
    def step(
        self, params: Params, obs: jax.Array, action: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """One imagined step: (obs [..., obs_dim], action [..., act_dim]) -> (next_obs, raw_reward).

        Pure, jittable, batched over leading dims and differentiable w.r.t. `action`. The reward is
        in the model's raw units; apply the dataset's `reward_scale`/`reward_bias` afterwards.
        """

    @abc.abstractmethod
    def save(self, params: Params, path: str) -> None:
        """Write params (and the config that built them) to `path` atomically."""

    @abc.abstractmethod
    def load(self, path: str) -> Params:
        """Read params written by `save`; raise ValueError if they do not fit this model."""

    @abc.abstractmethod
    def input_scaler(self, params: Params) -> tuple[jax.Array, jax.Array]:
        """(mean, std) over the concatenated [obs, action] input, for the agents' networks."""
