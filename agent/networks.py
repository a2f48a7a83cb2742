"""Small network builders shared by the agents (haiku)."""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp


def mlp(hidden: Sequence[int], out: int, layer_norm: bool = False):
    """Dense -> [LayerNorm] -> ReLU for each hidden size, then a linear output layer."""

    def forward(x: jax.Array) -> jax.Array:
        for i, width in enumerate(hidden):
            x = hk.Linear(width, name=f"dense_{i}")(x)
            if layer_norm:
                x = hk.LayerNorm(-1, create_scale=True, create_offset=True, name=f"ln_{i}")(x)
            x = jax.nn.relu(x)
        return hk.Linear(out, name="out")(x)

    return forward


def deterministic_policy(hidden: Sequence[int], act_dim: int) -> hk.Transformed:
    """a = tanh(MLP((s - mean) / std)); the normaliser is passed in, not learned."""

    def forward(obs: jax.Array, obs_mean: jax.Array, obs_std: jax.Array) -> jax.Array:
        x = (obs - obs_mean) / obs_std
        return jnp.tanh(mlp(hidden, act_dim)(x))

    return hk.without_apply_rng(hk.transform(forward))
