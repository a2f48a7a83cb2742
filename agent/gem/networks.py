"""GEM's networks (the official `TD3LnMlpPolicy`), as haiku transforms.

The actor is the shared deterministic one with LayerNorm (agent/networks.py
`deterministic_actor(..., layer_norm=True)`: Dense-LayerNorm-ReLU per hidden layer, Dense, tanh).

* `critics`: `num_critics` independent Q(s, a) MLPs, every hidden layer Dense-LayerNorm-ReLU.
  `critic_form="official"` (the official `mlp_td3`): [s, a] at the input, and the action
  concatenated again to the first layer's Dense output, before its LayerNorm and ReLU (so the
  LayerNorm spans width + |A| features). `critic_form="late_action"` (this project's earlier
  form): s alone at the input, the action concatenated after the first layer's ReLU.
  Returns [B, num_critics]; critics (0, 1) form twin A and (2, 3) twin B.
  The critics' parameters are stacked (every leaf [num_critics, ...], under the one critic's
  names) and applied with one `vmap`, so each layer is one batched product and the optimiser
  sees a few large leaves. Initialisation draws each critic as `num_critics` separate haiku
  modules (`q<k>/...`) would, then stacks them.

No observation normalisation (GEM feeds raw observations).
"""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from agent.networks import ensemble

NUM_CRITICS = 4


def _layer_norm(name: str, x: jax.Array) -> jax.Array:
    return hk.LayerNorm(-1, create_scale=True, create_offset=True, name=f"{name}_ln")(x)


def _ln_relu(name: str, x: jax.Array, layer_norm: bool) -> jax.Array:
    return jax.nn.relu(_layer_norm(name, x) if layer_norm else x)


def _first_layer(
    width: int, form: str, obs: jax.Array, action: jax.Array, layer_norm: bool
) -> jax.Array:
    """Layer 0 with the action's re-entry: official ReLU(LN([Dense([s, a]), a])); late_action
    [ReLU(LN(Dense(s))), a]."""
    if form == "official":
        x = hk.Linear(width, name="layer_0_dense")(jnp.concatenate([obs, action], axis=-1))
        return _ln_relu("layer_0", jnp.concatenate([x, action], axis=-1), layer_norm)
    x = _ln_relu("layer_0", hk.Linear(width, name="layer_0_dense")(obs), layer_norm)
    return jnp.concatenate([x, action], axis=-1)


def critics(
    hidden: Sequence[int],
    num_critics: int = NUM_CRITICS,
    form: str = "official",
    layer_norm: bool = True,
) -> hk.Transformed:
    """(obs [B, obs_dim], action [B, act_dim]) -> Q [B, num_critics], parameters stacked.
    `layer_norm=False` drops every LayerNorm (not GEM's critic: benchmarks/critic_step.py uses
    it to price the LayerNorms)."""

    def one_critic(obs: jax.Array, action: jax.Array) -> jax.Array:
        x = _first_layer(hidden[0], form, obs, action, layer_norm)
        for i, width in enumerate(hidden[1:], start=1):
            x = _ln_relu(f"layer_{i}", hk.Linear(width, name=f"layer_{i}_dense")(x), layer_norm)
        return hk.Linear(1, name="out")(x)

    single = hk.without_apply_rng(hk.transform(one_critic))
    separate = hk.without_apply_rng(
        hk.transform(lambda obs, action: ensemble(num_critics, "q", one_critic, obs, action))
    )

    def init(key: jax.Array, obs: jax.Array, action: jax.Array) -> hk.Params:
        return stack_members(separate.init(key, obs, action), "q", num_critics)

    def apply(params: hk.Params, obs: jax.Array, action: jax.Array) -> jax.Array:
        q = jax.vmap(single.apply, in_axes=(0, None, None))(params, obs, action)  # [K, B, 1]
        return jnp.moveaxis(q[..., 0], 0, -1)

    return hk.Transformed(init, apply)


def stack_members(params: hk.Params, prefix: str, count: int) -> hk.Params:
    """{"<prefix><k>/<module>": leaves} for k < count -> {"<module>": leaves stacked on axis 0}."""
    modules = [name.split("/", 1)[1] for name in params if name.startswith(f"{prefix}0/")]
    return {
        module: jax.tree.map(
            lambda *leaves: jnp.stack(leaves),
            *[params[f"{prefix}{k}/{module}"] for k in range(count)],
        )
        for module in modules
    }
