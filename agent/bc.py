"""Behaviour cloning: a deterministic tanh-MLP policy regressed onto dataset actions.

    L(theta) = E_{(s, a) ~ D} || tanh(f_theta(s)) - a ||^2

It is the first baseline, and LEQ's policy pre-training reuses `bc_loss`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agent import replay as replay_lib
from agent.networks import deterministic_policy
from envs.offline_data import OfflineData


class BCState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    key: jax.Array
    step: jax.Array
    obs_mean: jax.Array
    obs_std: jax.Array


def bc_loss(predicted: jax.Array, target: jax.Array) -> jax.Array:
    """Mean over the batch of the squared error summed over action dimensions."""
    return jnp.mean(jnp.sum(jnp.square(predicted - target), axis=-1))


def observation_stats(data: OfflineData | None, obs_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the dataset observations (std floored at 1e-3)."""
    if data is None:
        return np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)
    mean = data.observations.mean(0).astype(np.float32)
    std = np.maximum(data.observations.std(0), 1e-3).astype(np.float32)
    return mean, std


class BCAgent:
    """Deterministic-policy behaviour cloning with fused multi-step updates."""

    def __init__(self, cfg, obs_dim: int, act_dim: int, data: OfflineData | None):
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.batch_size = cfg.train.batch_size
        self.updates_per_call = cfg.train.updates_per_call
        self.policy = deterministic_policy(cfg.bc.hidden, act_dim)
        self.optimizer = optax.adam(cfg.bc.lr)
        self._stats = observation_stats(data, obs_dim)
        self._train_chunk = jax.jit(self._chunk)
        self._act = jax.jit(self.policy.apply)

    def init_state(self, key: jax.Array) -> BCState:
        init_key, key = jax.random.split(key)
        mean, std = (jnp.asarray(x) for x in self._stats)
        params = self.policy.init(init_key, jnp.zeros((1, self.obs_dim)), mean, std)
        return BCState(params, self.optimizer.init(params), key, jnp.int32(0), mean, std)

    def update(self, state: BCState, batch: dict) -> tuple[BCState, dict]:
        """One gradient step on a batch."""

        def loss_fn(params):
            pred = self.policy.apply(params, batch["observations"], state.obs_mean, state.obs_std)
            return bc_loss(pred, batch["actions"])

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        state = state._replace(params=params, opt_state=opt_state, step=state.step + 1)
        return state, {"train/loss": loss}

    def _chunk(self, state: BCState, replay: replay_lib.Replay) -> tuple[BCState, dict]:
        def body(state, _):
            key, sample_key = jax.random.split(state.key)
            batch = replay_lib.sample(replay, sample_key, self.batch_size)
            return self.update(state._replace(key=key), batch)

        state, metrics = jax.lax.scan(body, state, None, length=self.updates_per_call)
        return state, jax.tree_util.tree_map(jnp.mean, metrics)

    def train_chunk(self, state: BCState, replay: replay_lib.Replay) -> tuple[BCState, dict]:
        return self._train_chunk(state, replay)

    def act(self, state: BCState, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self._act(state.params, obs, state.obs_mean, state.obs_std))
