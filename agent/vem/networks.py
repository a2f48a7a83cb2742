"""VEM's networks, as haiku transforms without an RNG.

* `value_heads`: four independent V(s) MLPs (Linear-ReLU-...-Linear(1)), returned as [B, 4].
  Heads 0, 1 form pair 1 and heads 2, 3 pair 2 (the official code's two `Critic` modules with
  two heads each); the memory's estimator X reads min over the heads of pair X.
* `gaussian_policy`: mean = tanh(Linear(MLP(s))), a state-independent log-std
  -6 + 6 sigmoid(theta) in [-6, 0]; no tanh squashing of samples (the log-prob of a dataset
  action needs no Jacobian). Evaluation acts with the mean.

Both take the observation normaliser (mean, std) as inputs, not parameters: it is part of the
agent state (zeros/ones when observation normalisation is off, as in the official code).
"""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from agent.networks import ensemble, mlp
from agent.observations import normalize

NUM_HEADS = 4
LOG_STD_MIN, LOG_STD_MAX = -6.0, 0.0


def value_heads(hidden: Sequence[int], num_heads: int = NUM_HEADS) -> hk.Transformed:
    """obs [B, obs_dim] -> V [B, num_heads], each head its own MLP."""

    def forward(obs: jax.Array, obs_mean: jax.Array, obs_std: jax.Array) -> jax.Array:
        x = normalize(obs, obs_mean, obs_std)
        return ensemble(num_heads, "v", mlp(hidden, 1), x)

    return hk.without_apply_rng(hk.transform(forward))


def log_std_from_logits(theta: jax.Array) -> jax.Array:
    """log sigma = -6 + 6 sigmoid(theta): bounded in [-6, 0], smooth in theta."""
    return LOG_STD_MIN + (LOG_STD_MAX - LOG_STD_MIN) * jax.nn.sigmoid(theta)


def gaussian_policy(hidden: Sequence[int], act_dim: int) -> hk.Transformed:
    """obs [B, obs_dim] -> (mean [B, act_dim] in [-1, 1], log_std [act_dim])."""

    def forward(
        obs: jax.Array, obs_mean: jax.Array, obs_std: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        x = normalize(obs, obs_mean, obs_std)
        mean = jnp.tanh(mlp(hidden, act_dim)(x))
        theta = hk.get_parameter("log_std_logits", (act_dim,), init=jnp.zeros)
        return mean, log_std_from_logits(theta)

    return hk.without_apply_rng(hk.transform(forward))
