"""IQL's networks (haiku): a Gaussian policy with tanh means and a state-independent std, a V(s)
MLP; the twin critics are the shared ones (agent/networks.py)."""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from agent.networks import mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def gaussian_policy(hidden: Sequence[int], act_dim: int) -> hk.Transformed:
    """obs [B, d] -> (mean = tanh(MLP(obs)) [B, A], log_std [A]).

    The distribution is N(mean, diag(exp(log_std))^2), not squashed: IQL's policy for D4RL
    (log_std a free parameter, initialised at 0 and clipped to [-5, 2]); its mode tanh(MLP(obs))
    is the evaluation action.
    """

    def forward(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = jnp.tanh(mlp(hidden, act_dim)(obs))
        log_std = hk.get_parameter("log_std", (act_dim,), mean.dtype, init=jnp.zeros)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    return hk.without_apply_rng(hk.transform(forward))


def value_net(hidden: Sequence[int]) -> hk.Transformed:
    """obs [B, d] -> V(obs) [B]."""

    def forward(obs: jax.Array) -> jax.Array:
        return mlp(hidden, 1)(obs)[..., 0]

    return hk.without_apply_rng(hk.transform(forward))
