"""Has LEQ's critic converged on the data? Q on dataset pairs against their Monte-Carlo returns.

    G_i = r_i + gamma (1 - e_i) G_{i+1}      (rows in trajectory order, e_i = 1 at a trajectory end)

is the discounted return that the behaviour policy actually collected from row i on
(`agent.returns.discounted_returns_to_go`). After FQE,
Q(s_i, a_i) estimates the BC policy's value, which is close to it on data the BC policy
imitates well; a critic still near its initialisation sits far from it. Returns of trajectories
cut by a timeout are truncated there, so they understate the value of those rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def critic_against_returns(q: jax.Array, returns: jax.Array) -> dict[str, jax.Array]:
    """Scalars comparing Q(s_i, a_i) [n] with G_i [n]: both means, their mean difference, the
    mean absolute error and the correlation across rows."""
    qc, gc = q - jnp.mean(q), returns - jnp.mean(returns)
    corr = jnp.sum(qc * gc) / jnp.maximum(jnp.sqrt(jnp.sum(qc**2) * jnp.sum(gc**2)), 1e-12)
    return {
        "critic/q_data": jnp.mean(q),
        "critic/mc_return": jnp.mean(returns),
        "critic/q_minus_mc_return": jnp.mean(q - returns),
        "critic/abs_error_to_mc_return": jnp.mean(jnp.abs(q - returns)),
        "critic/correlation_with_mc_return": corr,
    }


def sample_rows(size: int, key: jax.Array, count: int) -> jax.Array:
    """`count` uniform row indices in [0, size) (with replacement)."""
    return jax.random.randint(key, (count,), 0, max(size, 1))
