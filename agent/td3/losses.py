"""TD3's losses (Fujimoto et al. 2018); the critic side is shared (agent/actor_critic.py,
agent/losses.py).

a~' = clip(pi'(s') + clip(N(0, sigma^2), -c, c), -1, 1)       target policy smoothing
y   = r + gamma m min(Q'_1(s', a~'), Q'_2(s', a~'))             clipped double-Q target
L_Q = sum_k mean (Q_k(s, a) - y)^2
L_pi = -mean Q_1(s, pi(s))                                      every `policy_delay` steps
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def actor_loss(q: jax.Array) -> jax.Array:
    """-mean Q_1(s, pi(s)); q [B, K] (only the first critic drives the actor)."""
    return -jnp.mean(q[:, 0])
