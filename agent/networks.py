"""Small network builders shared by the agents (haiku)."""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from agent.observations import normalize


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
        x = normalize(obs, obs_mean, obs_std)
        return jnp.tanh(mlp(hidden, act_dim)(x))

    return hk.without_apply_rng(hk.transform(forward))


def polyak(online, target, rate: float | jax.Array):
    """target <- rate * online + (1 - rate) * target, leaf by leaf (a soft target update)."""
    return jax.tree.map(lambda o, t: rate * o + (1.0 - rate) * t, online, target)


def batched_apply(fn, inputs: jax.Array, chunk: int) -> jax.Array:
    """fn(index, rows) over `inputs` [N, ...] in fixed chunks of `chunk` rows with lax.map
    (bounded memory); `index` is the chunk's number, rows [chunk, ...], the last zero-padded."""
    n = inputs.shape[0]
    chunk = max(1, min(chunk, n))
    count = -(-n // chunk)
    padded = jnp.concatenate([inputs, jnp.zeros((count * chunk - n, *inputs.shape[1:]))], 0)
    chunks = (jnp.arange(count), padded.reshape(count, chunk, *inputs.shape[1:]))
    out = jax.lax.map(lambda c: fn(*c), chunks)
    return out.reshape(count * chunk, *out.shape[2:])[:n]
