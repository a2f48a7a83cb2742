"""TD3+BC's actor loss (Fujimoto and Gu 2021, "A Minimalist Approach to Offline RL").

    lambda = alpha / sg( mean_b |Q_1(s_b, pi(s_b))| )
    L_pi   = -lambda mean_b Q_1(s_b, pi(s_b)) + mean_{b,i} (pi(s_b)_i - a_b,i)^2

The critics are TD3's (agent/actor_critic.py: smoothed targets, clipped double Q); observations
are standardised with the dataset's mean and std.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def actor_loss(q1: jax.Array, policy_actions: jax.Array, actions: jax.Array, alpha: float):
    """L_pi above; q1 [B] = Q_1(s, pi(s)), policy_actions / actions [B, A].
    -> (loss, lambda)."""
    lam = jax.lax.stop_gradient(alpha / jnp.mean(jnp.abs(q1)))
    return -lam * jnp.mean(q1) + jnp.mean(jnp.square(policy_actions - actions)), lam
