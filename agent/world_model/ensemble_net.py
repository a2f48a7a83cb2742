"""The ensemble network of §2.1: batched member weights, forward pass, soft logvar bounds, losses.

A net is a dict pytree
    {"layers": [{"w": [M, in, out], "b": [M, out]}, ...],   # hidden layers, then the output layer
     "max_logvar": [D], "min_logvar": [D]}                   # shared by all members
with M members and D = obs_dim + 1 target dims (y = [s' - s, r]). Every member is evaluated at
once by batched matmuls over the leading member axis (no Python loop over members).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from agent.world_model.ensemble_config import EnsembleConfig

Net = dict


class EnsembleParams(NamedTuple):
    """Everything a trained ensemble needs to predict."""

    net: Net
    input_mean: jax.Array  # [obs_dim + act_dim], scaler fitted on the train split
    input_std: jax.Array  # [obs_dim + act_dim]
    elites: jax.Array  # int32 [num_elites], member indices


def init_net(key: jax.Array, in_dim: int, out_dim: int, config: EnsembleConfig) -> Net:
    """Weights ~ truncated normal (+-2 std) with std 1/(2 sqrt(fan_in)), biases 0.

    `out_dim` is the number of target dims D; the output layer has 2 D units (mean, logvar).
    """
    sizes = (in_dim, *config.hidden_sizes, 2 * out_dim)
    m = config.num_members
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
        std = 1.0 / (2.0 * jnp.sqrt(fan_in))
        w = std * jax.random.truncated_normal(k, -2.0, 2.0, (m, fan_in, fan_out), jnp.float32)
        layers.append({"w": w, "b": jnp.zeros((m, fan_out), jnp.float32)})
    return {
        "layers": layers,
        "max_logvar": jnp.full((out_dim,), config.max_logvar_init, jnp.float32),
        "min_logvar": jnp.full((out_dim,), config.min_logvar_init, jnp.float32),
    }


def swish(x: jax.Array) -> jax.Array:
    """x * sigmoid(x)."""
    return x * jax.nn.sigmoid(x)


def soft_clamp_logvar(logvar: jax.Array, min_lv: jax.Array, max_lv: jax.Array) -> jax.Array:
    """Smooth bounds: lv <- max_lv - softplus(max_lv - lv); lv <- min_lv + softplus(lv - min_lv)."""
    logvar = max_lv - jax.nn.softplus(max_lv - logvar)
    return min_lv + jax.nn.softplus(logvar - min_lv)


def _dense(x: jax.Array, layer: dict) -> jax.Array:
    """x [B, in] (shared by members) or [M, B, in] -> [M, B, out]."""
    eq = "bi,mio->mbo" if x.ndim == 2 else "mbi,mio->mbo"
    return jnp.einsum(eq, x, layer["w"]) + layer["b"][:, None, :]


def forward(net: Net, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Normalised input z [B, in] or [M, B, in] -> (mean, logvar), each [M, B, D]."""
    h = z
    for layer in net["layers"][:-1]:
        h = swish(_dense(h, layer))
    out = _dense(h, net["layers"][-1])
    mean, raw_logvar = jnp.split(out, 2, axis=-1)
    return mean, soft_clamp_logvar(raw_logvar, net["min_logvar"], net["max_logvar"])


def gaussian_nll_terms(mean: jax.Array, logvar: jax.Array, y: jax.Array) -> jax.Array:
    """sum_k mean_{b,d}[(mu_k - y)^2 exp(-logvar_k)] + sum_k mean_{b,d}[logvar_k].

    mean, logvar: [M, B, D]; y: [M, B, D] (each member's own bootstrap batch) or [B, D].
    """
    inv_mse = jnp.mean(jnp.square(mean - y) * jnp.exp(-logvar), axis=(1, 2))
    return jnp.sum(inv_mse) + jnp.sum(jnp.mean(logvar, axis=(1, 2)))


def weight_decay_loss(net: Net, weight_decays: tuple[float, ...]) -> jax.Array:
    """sum_l 0.5 * wd_l * ||W_l||^2 over all members (weights only, no biases)."""
    terms = [
        0.5 * wd * jnp.sum(jnp.square(layer["w"]))
        for layer, wd in zip(net["layers"], weight_decays, strict=True)
    ]
    return sum(terms)


def logvar_bound_loss(net: Net, coef: float) -> jax.Array:
    """coef * sum(max_logvar) - coef * sum(min_logvar): pulls the learnable bounds together."""
    return coef * jnp.sum(net["max_logvar"]) - coef * jnp.sum(net["min_logvar"])


def ensemble_loss(
    net: Net, z: jax.Array, y: jax.Array, config: EnsembleConfig
) -> tuple[jax.Array, dict]:
    """L = gaussian_nll_terms(f(z), y) + weight_decay_loss + logvar_bound_loss (§2.1).

    z: [M, B, in] normalised inputs, y: [M, B, D] raw targets [s' - s, r].
    """
    mean, logvar = forward(net, z)
    nll = gaussian_nll_terms(mean, logvar, y)
    decay = weight_decay_loss(net, config.weight_decays)
    bounds = logvar_bound_loss(net, config.logvar_bound_coef)
    loss = nll + decay + bounds
    return loss, {"loss": loss, "nll": nll, "weight_decay": decay, "logvar_bounds": bounds}


def member_mse(net: Net, z: jax.Array, y: jax.Array) -> jax.Array:
    """Validation metric: MSE of each member's mean prediction, z [B, in], y [B, D] -> [M]."""
    mean, _ = forward(net, z)
    return jnp.mean(jnp.square(mean - y[None]), axis=(1, 2))
