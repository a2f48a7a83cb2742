"""IQL's losses (Kostrikov, Nair and Levine 2022, "Offline RL with Implicit Q-Learning").

    L_V  = E_(s,a)~D [ L2_tau( min_k Q'_k(s, a) - V(s) ) ],   L2_tau(u) = |tau - 1(u < 0)| u^2
    L_Q  = E_(s,a,r,s')~D [ sum_k ( r + gamma m V(s') - Q_k(s, a) )^2 ]
    L_pi = -E_(s,a)~D [ min(exp(beta (min_k Q'_k(s, a) - V(s))), w_max) log pi(a | s) ]

Q' are the target critics (Polyak-averaged), V is trained towards their upper expectile, the
critics towards one-step targets through V (no max over actions, so no out-of-data action is
ever queried), and the policy by advantage-weighted regression with clipped weights. L_Q is
the shared twin-critic squared error, and L2_tau the shared expectile loss (agent/losses.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agent import losses as shared


def expectile_loss(diff: jax.Array, tau: float) -> jax.Array:
    """mean L2_tau(u) over u = diff (tau > 0.5 weights positive errors more)."""
    return jnp.mean(shared.expectile_loss(diff, tau))


def value_loss(target_q: jax.Array, v: jax.Array, tau: float) -> jax.Array:
    """L_V: expectile regression of V(s) [B] onto min_k Q'_k(s, a); target_q [B, K]."""
    return expectile_loss(jnp.min(target_q, axis=-1) - v, tau)


def critic_targets(rewards: jax.Array, masks: jax.Array, next_v: jax.Array, gamma: float):
    """y = r + gamma m V(s') [B]."""
    return rewards + gamma * masks * next_v


def awr_weights(target_q: jax.Array, v: jax.Array, temperature: float, max_weight: float):
    """w = min(exp(beta (min_k Q'_k(s, a) - V(s))), w_max) [B], constants of the actor loss."""
    advantage = jnp.min(target_q, axis=-1) - v
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(temperature * advantage), max_weight))


def actor_loss(weights: jax.Array, log_prob: jax.Array) -> jax.Array:
    """L_pi = -mean_b w_b log pi(a_b | s_b)."""
    return -jnp.mean(weights * log_prob)
