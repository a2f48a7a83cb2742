"""LEQ's code-form lambda-return on imagined trajectories, in the two
forms the LEQ agents use, and the masks they are made of.

Both forms are one backward recursion (`lambda_return_scan`), a reversed `lax.scan` (H is a
static shape):

    G_H = Q_H;  k_{H-1} = 1
    for t = H-1 .. 0:
        y_t = a_t r_t + b_t d_t G_{t+1}
        G_t = (Q_t + lam k_t y_t) / (1 + lam k_t);   k_{t-1} = 1 + lam k_t

    state form  (LEQ):         a_t = m_t, b_t = m_{t+1}, d_t = gamma; alive masks m
                               (`alive_masks`)
    latent form (LEQ pixels):  a_t = b_t = M_t, d_t = c_{t+1}; continues c (the discount folded
                               in) and M_t = prod_{k<=t} c_k (`trajectory_weights`)

(b_t and d_t stay two factors inside the scan: a product taken outside would round the
gradients through the continues differently.)

Closed form: G_t = sum_{n=0}^{H-t} lam^n G^(n)_t / sum_{n=0}^{H-t} lam^n, with the 0-step return
G^(0)_t = Q_t (the critic's own value has weight 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

RETURN_MASKS = ("cumulative", "per_step")


def lambda_return_scan(
    rewards: jax.Array,
    reward_weights: jax.Array,
    bootstrap_weights: jax.Array,
    discounts: jax.Array,
    q_values: jax.Array,
    lam: float,
) -> jax.Array:
    """The recursion of the module docstring: rewards r, reward_weights a, bootstrap_weights b,
    discounts d [H, B], q_values Q [H+1, B] -> G_t for t = 0..H-1, [H, B]."""

    def step(carry, xs):
        g_next, k = carry
        r, a, b, d, q = xs
        y = a * r + b * d * g_next
        g = (q + lam * k * y) / (1.0 + lam * k)
        return (g, 1.0 + lam * k), g

    init = (q_values[-1], jnp.ones((), q_values.dtype))
    xs = (rewards, reward_weights, bootstrap_weights, discounts, q_values[:-1])
    _, g = jax.lax.scan(step, init, xs, reverse=True)
    return g


def alive_masks(dones: jax.Array, dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """m_0 = 1, m_{t+1} = m_t (1 - d_t): dones [H, B] (bool or 0/1) -> alive [H+1, B] float."""
    not_done = 1.0 - dones.astype(dtype)
    first = jnp.ones_like(not_done[:1])
    return jnp.cumprod(jnp.concatenate([first, not_done], axis=0), axis=0)


def lambda_returns(
    rewards: jax.Array, q_values: jax.Array, alive: jax.Array, gamma: float, lam: float
) -> jax.Array:
    """State form: y_t = m_t r_t + gamma m_{t+1} G_{t+1}; rewards [H, B], Q [H+1, B], alive
    masks m [H+1, B] -> G_t for t = 0..H-1, [H, B]."""
    discounts = jnp.full_like(rewards, gamma)
    return lambda_return_scan(rewards, alive[:-1], alive[1:], discounts, q_values, lam)


def trajectory_weights(continues: jax.Array, with_last: bool = False) -> jax.Array:
    """M_t = prod_{k=1..t} c_k (M_0 = 1), the probability of still being in the episode at
    s_t: t = 0..H-1 ([H, N] -> [H, N]), or t = 0..H with `with_last` ([H, N] -> [H+1, N])."""
    ones = jnp.ones_like(continues[:1])
    kept = continues if with_last else continues[:-1]
    return jnp.cumprod(jnp.concatenate([ones, kept], axis=0), axis=0)


def continue_lambda_returns(
    rewards: jax.Array,
    continues: jax.Array,
    q_values: jax.Array,
    lam: float,
    masks: str = "cumulative",
) -> jax.Array:
    """Latent form on imagined continues; rewards r_{t+1} and continues c_{t+1} [H, N] (entry t
    is the step into s_{t+1}), Q [H+1, N] -> G_t for t = 0..H-1, [H, N]:

        y_t = M_t r_{t+1} + M_t c_{t+1} G_{t+1}     masks="cumulative" (LEQ_DV3, §3.10)
        y_t = r_{t+1} + c_{t+1} G_{t+1}             masks="per_step" (DreamerV3)

    With 0/1 continues both agree; with soft ones LEQ_DV3's applies each continue again at
    every deeper level."""
    if masks not in RETURN_MASKS:
        raise ValueError(f"masks={masks!r} is not one of {RETURN_MASKS}")
    cumulative = masks == "cumulative"
    alive = trajectory_weights(continues) if cumulative else jnp.ones_like(continues)  # M_t
    return lambda_return_scan(rewards, alive, alive, continues, q_values, lam)


@jax.jit
def discounted_returns_to_go(rewards: jax.Array, ends: jax.Array, gamma: float) -> jax.Array:
    """G_i = r_i + gamma (1 - e_i) G_{i+1} over rows in trajectory order (e_i = 1 at a trajectory
    end): the discounted return the data's behaviour collected from row i on. G [N], one reverse
    scan over the rows."""

    def step(next_return, row):
        reward, end = row
        value = reward + gamma * (1.0 - end) * next_return
        return value, value

    _, returns = jax.lax.scan(step, jnp.zeros((), rewards.dtype), (rewards, ends), reverse=True)
    return returns
