"""Behaviour cloning: a deterministic tanh-MLP policy regressed onto dataset actions.

    L(theta) = E_{(s, a) ~ D} || tanh(f_theta(s)) - a ||^2

It is the first baseline, and LEQ's policy pre-training reuses `bc_loss`. It reads the
observation through `flat_obs`, so it trains on states and (flattened) images alike, and it can
draw its batches on the host (`device_replay = False`) for datasets too large for the device.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from agent import replay as replay_lib
from agent.networks import deterministic_policy
from agent.observations import flat_obs
from agent.programs import apply_gradients
from agent.protocol import Agent, Context, Spec

PHASE = "bc"


class BCState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    obs_mean: jax.Array
    obs_std: jax.Array


def bc_loss(predicted: jax.Array, target: jax.Array) -> jax.Array:
    """Mean over the batch of the squared error summed over action dimensions."""
    return jnp.mean(jnp.sum(jnp.square(predicted - target), axis=-1))


class BCAgent(Agent):
    """Deterministic-policy behaviour cloning."""

    device_replay = False
    policy_fields = ("params", "obs_mean", "obs_std")

    def __init__(self, cfg, spec: Spec, context: Context):
        super().__init__(cfg, spec, context)
        self.batch = cfg.train.batch_size
        self.net = deterministic_policy(cfg.bc.hidden, spec.act_dim)
        self.optimizer = optax.adam(cfg.bc.lr)

    def init(self, key: jax.Array, spec: Spec) -> BCState:
        init_key, _ = jax.random.split(key)
        mean, std = jnp.asarray(self.context.obs_mean), jnp.asarray(self.context.obs_std)
        dummy = jnp.zeros((1, spec.flat_obs_dim))
        params = self.net.init(init_key, dummy, mean, std)
        return BCState(params, self.optimizer.init(params), mean, std)

    def phase(self, step: int) -> str:
        return PHASE

    def batch_size(self, phase: str) -> int:
        return self.batch

    def train(self, phase, state: BCState, replay, key) -> tuple[BCState, dict]:
        """One gradient step on a uniform batch."""
        batch = replay_lib.sample(replay, key, self.batch)
        obs = flat_obs(batch["observations"], self.spec)

        def loss_fn(params):
            pred = self.net.apply(params, obs, state.obs_mean, state.obs_std)
            return bc_loss(pred, batch["actions"])

        params, opt_state, loss, norm = apply_gradients(
            self.optimizer, state.params, state.opt_state, loss_fn
        )
        metrics = {"train/loss": loss, "train/grad_norm": norm}
        return state._replace(params=params, opt_state=opt_state), metrics

    def policy(self, state: BCState, carry, obs, mode, key):
        """The deterministic policy (the same in every mode)."""
        x = flat_obs(obs, self.spec)
        return carry, self.net.apply(state.params, x, state.obs_mean, state.obs_std)
