"""VEM's losses as pure functions.

Notation: u = R^ - V (memory return minus value), tau = the expectile level, B = batch size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agent import losses as shared

EXPECTILE_FORMS = ("paper", "code")


def expectile_paper(u: jax.Array, tau: float | jax.Array) -> jax.Array:
    """Paper form, elementwise: ell(u) = |tau - 1(u < 0)| u^2.

    Its minimiser over a constant V is the tau-expectile of R^ (tau > 0.5: optimistic).
    """
    return shared.expectile_loss(u, tau)


def expectile_code(u: jax.Array, tau: float | jax.Array) -> jax.Array:
    """Official code's form (`TD3.py : train_critic`), elementwise:

        ell(u) = (tau max(u, 0) + (1 - tau) min(u, 0))^2
               = tau^2 u^2 (u > 0),  (1 - tau)^2 u^2 (u < 0)

    i.e. the paper form with squared weights (effective level tau^2 / (tau^2 + (1 - tau)^2)).
    """
    return jnp.square(tau * jnp.maximum(u, 0.0) + (1.0 - tau) * jnp.minimum(u, 0.0))


def expectile(u: jax.Array, tau: float | jax.Array, form: str = "paper") -> jax.Array:
    """`expectile_paper` or `expectile_code` by name."""
    if form == "paper":
        return expectile_paper(u, tau)
    if form == "code":
        return expectile_code(u, tau)
    raise ValueError(f"expectile form must be one of {EXPECTILE_FORMS}, got {form!r}")


def pair_targets(returns: jax.Array) -> jax.Array:
    """Memory returns [B, 2] -> head targets [B, 4]: heads 0, 1 <- R^(1); heads 2, 3 <- R^(2)."""
    return jnp.repeat(returns, 2, axis=-1)


def value_loss(
    values: jax.Array, returns: jax.Array, tau: float | jax.Array, form: str = "paper"
) -> jax.Array:
    """L_V = E_{B, heads}[ ell_tau(sg(R^_pair(head)) - V_head(s)) ].

    values [B, 4] (online heads), returns [B, 2] (memory returns of the sampled rows).
    """
    u = jax.lax.stop_gradient(pair_targets(returns)) - values
    return jnp.mean(expectile(u, tau, form))


def advantages(returns: jax.Array, values: jax.Array) -> jax.Array:
    """A^ = min(R^(1), R^(2)) - mean_heads V(s)  (code: min over memory columns, mean of 4 heads).

    returns [B, 2], values [B, 4] -> [B].
    """
    return jnp.min(returns, axis=-1) - jnp.mean(values, axis=-1)


def advantage_weights(adv: jax.Array, temperature: float | jax.Array) -> jax.Array:
    """w_i = B softmax_i(A^_i / temperature) over the batch: positive, mean exactly 1."""
    return adv.shape[0] * jax.nn.softmax(adv / temperature, axis=0)


def policy_loss(log_prob: jax.Array, weights: jax.Array) -> jax.Array:
    """J(pi) = -E_B[ sg(w) log pi(a | s) ] (generalised advantage-weighted regression)."""
    return -jnp.mean(jax.lax.stop_gradient(weights) * log_prob)
