"""GEM's networks (the official `TD3LnMlpPolicy`), as haiku transforms.

The actor is the shared deterministic one with LayerNorm (agent/networks.py
`deterministic_actor(..., layer_norm=True)`: Dense-LayerNorm-ReLU per hidden layer, Dense, tanh).

* `critics`: `num_critics` independent Q(s, a) MLPs; the action is concatenated to the output of
  the first hidden layer (not to the input), every hidden layer is Dense-LayerNorm-ReLU.
  Returns [B, num_critics]; critics (0, 1) form twin A and (2, 3) twin B.

No observation normalisation (GEM feeds raw observations).
"""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from agent.networks import ensemble

NUM_CRITICS = 4


def _dense_ln_relu(width: int, name: str, x: jax.Array) -> jax.Array:
    x = hk.Linear(width, name=f"{name}_dense")(x)
    x = hk.LayerNorm(-1, create_scale=True, create_offset=True, name=f"{name}_ln")(x)
    return jax.nn.relu(x)


def critics(hidden: Sequence[int], num_critics: int = NUM_CRITICS) -> hk.Transformed:
    """(obs [B, obs_dim], action [B, act_dim]) -> Q [B, num_critics]."""

    def one_critic(obs: jax.Array, action: jax.Array) -> jax.Array:
        x = _dense_ln_relu(hidden[0], "layer_0", obs)
        x = jnp.concatenate([x, action], axis=-1)
        for i, width in enumerate(hidden[1:], start=1):
            x = _dense_ln_relu(width, f"layer_{i}", x)
        return hk.Linear(1, name="out")(x)

    def forward(obs: jax.Array, action: jax.Array) -> jax.Array:
        return ensemble(num_critics, "q", one_critic, obs, action)

    return hk.without_apply_rng(hk.transform(forward))
