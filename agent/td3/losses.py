"""TD3's losses (Fujimoto et al. 2018).

a~' = clip(pi'(s') + clip(N(0, sigma^2), -c, c), -1, 1)       target policy smoothing
y   = r + gamma m min(Q'_1(s', a~'), Q'_2(s', a~'))             clipped double-Q target
L_Q = sum_k mean (Q_k(s, a) - y)^2
L_pi = -mean Q_1(s, pi(s))                                      every `policy_delay` steps
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agent.sac.losses import critic_loss  # the same L_Q: sum_k mean squared error

__all__ = ["actor_loss", "clipped_double_q_targets", "critic_loss", "smoothed_target_actions"]


def smoothed_target_actions(
    actions: jax.Array, key: jax.Array, noise: float, noise_clip: float
) -> jax.Array:
    """clip(a + clip(N(0, noise^2), -noise_clip, noise_clip), -1, 1)."""
    eps = jnp.clip(noise * jax.random.normal(key, actions.shape), -noise_clip, noise_clip)
    return jnp.clip(actions + eps, -1.0, 1.0)


def clipped_double_q_targets(
    rewards: jax.Array, masks: jax.Array, next_q: jax.Array, gamma: float
) -> jax.Array:
    """y = r + gamma m min_k Q'_k(s', a~'); next_q [B, 2]."""
    return rewards + gamma * masks * jnp.min(next_q, axis=-1)


def actor_loss(q: jax.Array) -> jax.Array:
    """-mean Q_1(s, pi(s)); q [B, K] (only the first critic drives the actor)."""
    return -jnp.mean(q[:, 0])
