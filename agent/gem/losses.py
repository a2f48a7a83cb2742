"""GEM's losses and targets as pure functions.

Column conventions: critic values are [B, 4] with twin A = critics (0, 1) and twin B = (2, 3);
memory returns are [B, 2] = (R^A, R^B).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PAIRINGS = ("twin", "broadcast")


def asymmetric_loss(u: jax.Array, alpha: float) -> jax.Array:
    """ell(u) = leaky_relu(-u, alpha)^2 / alpha, u = R - Q (element-wise).

    = (Q - R)^2 / alpha when Q > R (over-estimation) and alpha (R - Q)^2 when Q <= R; with
    alpha = 0.5 over-estimation costs 4x more. alpha = 1 is the plain squared error.
    """
    return jax.nn.leaky_relu(-u, alpha) ** 2 / alpha


def twin_values(q: jax.Array) -> jax.Array:
    """Clipped double Q inside each twin: [B, 4] -> [B, 2] = (min(Q1, Q2), min(Q3, Q4))."""
    return jnp.min(q.reshape(q.shape[0], 2, 2), axis=-1)


def critic_loss(q: jax.Array, returns: jax.Array, alpha: float, pairing: str) -> jax.Array:
    """Mean asymmetric loss of the four critics q [B, 4] against the twin returns [B, 2].

    pairing "twin" (intended): critics 1, 2 regress to R^A, critics 3, 4 to R^B, i.e. targets
    [R^A, R^A, R^B, R^B] column by column. pairing "broadcast" (what the official TF code
    computes, §5.1 point 6): every critic regresses to all four target columns, mean over the
    4 x 4 pairs. Both average over every (sample, critic, target) entry, as the code does.
    """
    targets = jax.lax.stop_gradient(jnp.repeat(returns, 2, axis=-1))  # [B, 4]
    if pairing == "twin":
        u = targets - q
    elif pairing == "broadcast":
        u = targets[:, None, :] - q[:, :, None]  # [B, critic, target]
    else:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    return jnp.mean(asymmetric_loss(u, alpha))


def one_step_returns(
    rewards: jax.Array, masks: jax.Array, next_twin_values: jax.Array, gamma: float
) -> jax.Array:
    """R^X_{t,0} = r_t + gamma (1 - d_t) Q^X(s_{t+1}, a~_{t+1}): [B], [B], [B, 2] -> [B, 2].

    masks = 1 - d_t (0 only at a true terminal; a time-limit truncation keeps mask 1).
    """
    return rewards[:, None] + gamma * masks[:, None] * next_twin_values


def actor_loss(q: jax.Array) -> jax.Array:
    """L_pi = -mean_b mean_k Q_k(s_b, pi(s_b)), the mean over all four critics."""
    return -jnp.mean(q)
