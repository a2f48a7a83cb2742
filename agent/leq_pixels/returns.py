"""Return targets and return normalisation of LEQ from pixels (algorithms.md §3.10).

Imagined trajectory from a start latent s_0: a_t ~ pi(s_t), and the model gives s_{t+1}, the
reward r_{t+1} and the continue c_{t+1} (its continue head, the discount folded in) for
t = 0..H-1. Shapes: rewards and continues [H, N] (entry t belongs to the step into s_{t+1}),
critic values Q_t = Q(s_t, a_t) [H+1, N].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

RETURN_MASKS = ("cumulative", "per_step")


def continue_lambda_returns(
    rewards: jax.Array,
    continues: jax.Array,
    q_values: jax.Array,
    lam: float,
    masks: str = "cumulative",
) -> jax.Array:
    """LEQ's code-form lambda-return (§3.3(c)) on imagined continues:

        G_H = Q_H;  k_{H-1} = 1
        for t = H-1 .. 0:
            y_t = M_t r_{t+1} + M_{t+1} G_{t+1}          masks="cumulative" (LEQ_DV3, §3.10)
            y_t = r_{t+1} + c_{t+1} G_{t+1}              masks="per_step" (DreamerV3)
            G_t = (Q_t + lam k_t y_t) / (1 + lam k_t);   k_{t-1} = 1 + lam k_t

    with M_t = prod_{k=1..t} c_k (M_0 = 1), the alive mask of §3.3(c) made of the continue
    head's probabilities (which fold in the discount; gamma = 1 here). With 0/1 continues both
    forms agree; with soft ones LEQ_DV3's applies each continue again at every deeper level.
    -> G_t for t = 0..H-1, [H, N]: per_step is the normalised lam^n-weighted mix of the n-step
    returns n = 0..H-t, with G^(0)_t = Q_t.
    """
    if masks not in RETURN_MASKS:
        raise ValueError(f"masks={masks!r} is not one of {RETURN_MASKS}")
    cumulative = masks == "cumulative"
    alive = trajectory_weights(continues) if cumulative else jnp.ones_like(continues)  # M_t

    def step(carry, xs):
        g_next, k = carry
        r, c, q, m = xs
        y = m * r + m * c * g_next
        g = (q + lam * k * y) / (1.0 + lam * k)
        return (g, 1.0 + lam * k), g

    init = (q_values[-1], jnp.ones((), q_values.dtype))
    xs = (rewards, continues, q_values[:-1], alive)
    _, g = jax.lax.scan(step, init, xs, reverse=True)
    return g


def trajectory_weights(continues: jax.Array, with_last: bool = False) -> jax.Array:
    """Loss weight of each imagined state s_t: prod_{k=1..t} c_k (weight_0 = 1), the
    probability of still being in the episode; t = 0..H-1 ([H, N] -> [H, N]), or t = 0..H
    with `with_last` ([H, N] -> [H+1, N])."""
    ones = jnp.ones_like(continues[:1])
    kept = continues if with_last else continues[:-1]
    return jnp.cumprod(jnp.concatenate([ones, kept], axis=0), axis=0)


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
