"""DreamerV3's return normalisation, as LEQ from pixels uses it.

    low  <- (1 - rate) low + rate P5(G),   high <- (1 - rate) high + rate P95(G)
    S     = max(1, high - low)                                 (advantages are divided by S)

The continue-masked lambda-return itself is the shared latent form (agent/returns.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def update_return_scale(
    low: jax.Array, high: jax.Array, returns: jax.Array, rate: float
) -> tuple[jax.Array, jax.Array]:
    """DreamerV3's return normalisation: EMAs (rate `rate`) of the 5th and 95th percentiles of
    the returns of a batch. -> (low, high)."""
    p5, p95 = jnp.percentile(returns, 5.0), jnp.percentile(returns, 95.0)
    return (1 - rate) * low + rate * p5, (1 - rate) * high + rate * p95


def return_scale(low: jax.Array, high: jax.Array) -> jax.Array:
    """S = max(1, P95 - P5): advantages are divided by S, never scaled up."""
    return jnp.maximum(1.0, high - low)
