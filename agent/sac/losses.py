"""SAC's losses (Haarnoja et al. 2018, with the automatic temperature of Haarnoja et al. 2019).

a = tanh(u), u = mu(s) + sigma(s) eps, eps ~ N(0, I)       (agent/losses.py: sample_tanh_gaussian)
y           = r + gamma m ( min_k Q'_k(s', a') - alpha log pi(a'|s') ),   a' ~ pi(.|s')
L_Q         = sum_k mean (Q_k(s, a) - y)^2                 (agent/losses.py: twin_critic_loss)
L_pi        = mean ( alpha log pi(a~|s) - min_k Q_k(s, a~) ),             a~ ~ pi(.|s)
L_alpha     = -mean ( log alpha (log pi(a~|s) + H_target) ),              H_target = -|A|
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def soft_targets(
    rewards: jax.Array,
    masks: jax.Array,
    next_q: jax.Array,
    next_log_prob: jax.Array,
    alpha: jax.Array,
    gamma: float,
) -> jax.Array:
    """y = r + gamma m (min_k Q'_k(s', a') - alpha log pi(a'|s')); next_q [B, K]."""
    return rewards + gamma * masks * (jnp.min(next_q, axis=-1) - alpha * next_log_prob)


def actor_loss(q: jax.Array, log_prob: jax.Array, alpha: jax.Array) -> jax.Array:
    """mean(alpha log pi(a~|s) - min_k Q_k(s, a~)); q [B, K]."""
    return jnp.mean(alpha * log_prob - jnp.min(q, axis=-1))


def temperature_loss(log_alpha: jax.Array, log_prob: jax.Array, target_entropy: float) -> jax.Array:
    """-mean(log alpha (log pi + H_target)), log pi held constant."""
    return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy))
