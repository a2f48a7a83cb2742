"""SAC's and TD3's networks (haiku): MLP actors and K independent Q(s, a) MLPs on [s, a]."""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from agent.networks import mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def gaussian_actor(hidden: Sequence[int], act_dim: int) -> hk.Transformed:
    """obs [B, d] -> (mean [B, A], log_std [B, A]); log_std squashed into [-5, 2] by tanh."""

    def forward(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = mlp(hidden, 2 * act_dim)(obs)
        mean, raw = jnp.split(out, 2, axis=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
        return mean, log_std

    return hk.without_apply_rng(hk.transform(forward))


def deterministic_actor(hidden: Sequence[int], act_dim: int) -> hk.Transformed:
    """obs [B, d] -> tanh(MLP(obs)) in [-1, 1]^A."""

    def forward(obs: jax.Array) -> jax.Array:
        return jnp.tanh(mlp(hidden, act_dim)(obs))

    return hk.without_apply_rng(hk.transform(forward))


def critics(hidden: Sequence[int], num_critics: int = 2) -> hk.Transformed:
    """(obs [B, d], action [B, A]) -> Q [B, num_critics], each critic its own MLP on [s, a]."""

    def forward(obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        values = []
        for i in range(num_critics):
            with hk.experimental.name_scope(f"q{i}"):
                values.append(mlp(hidden, 1)(x))
        return jnp.concatenate(values, axis=-1)

    return hk.without_apply_rng(hk.transform(forward))
