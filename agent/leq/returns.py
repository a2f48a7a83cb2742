"""Imagined-trajectory return targets for LEQ.

Shapes: rewards r [H, B], critic values Q_t = Q(s_t, a_t) [H+1, B], alive masks m [H+1, B] with
m_0 = 1, m_{t+1} = m_t (1 - d_t). Every function is pure and jittable; the backward recursions
run as a reversed `lax.scan`, so H is a static shape, not a Python loop. The lambda-return and
the alive masks are the shared ones (agent/returns.py).

All three targets are instances of one linear recursion (`recursive_returns`):

    G_H = Q_H,   G_t = alpha_t Q_t + beta_t (m_t r_t + gamma m_{t+1} G_{t+1})

with per-step constants (alpha_t, beta_t) from `return_coefficients`; the action-gradient code
(action_gradients.py) uses those constants as back-propagation cotangents.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agent.returns import lambda_returns

RETURN_KINDS = ("lambda", "multi_step", "one_step")


def n_step_returns(
    rewards: jax.Array, q_values: jax.Array, alive: jax.Array, gamma: float
) -> jax.Array:
    """Multi-step ablation: the full remaining-horizon return for every t, shape [H, B].

    G_H = Q_H;  G_t = m_t r_t + gamma m_{t+1} G_{t+1}
      = sum_{i=t}^{H-1} gamma^{i-t} m_i r_i + gamma^{H-t} m_H Q_H   (binary, monotone masks)
    """

    def step(g_next, xs):
        r, m, m_next = xs
        g = m * r + gamma * m_next * g_next
        return g, g

    _, g = jax.lax.scan(step, q_values[-1], (rewards, alive[:-1], alive[1:]), reverse=True)
    return g


def one_step_targets(
    rewards: jax.Array, q_values: jax.Array, dones: jax.Array, gamma: float
) -> jax.Array:
    """One-step ablation: y_t = r_t + gamma (1 - d_t) Q_{t+1}, shape [H, B].

    As in LEQ's `onestep_update_q`: the per-transition done (not the cumulative alive mask) stops
    the bootstrap; post-termination steps are removed by the loss weights gamma^t m_t instead.
    """
    not_done = 1.0 - dones.astype(q_values.dtype)
    return rewards + gamma * not_done * q_values[1:]


def return_coefficients(kind: str, horizon: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta), each [H+1], such that `recursive_returns` reproduces the target `kind`.

    lambda:     c_t = sum_{k=0}^{H-1-t} lam^k, alpha_t = 1 / (1 + lam c_t),
                beta_t = lam c_t / (1 + lam c_t)                (t < H)
    multi_step: alpha_t = 0, beta_t = 1                         (t < H)
    and alpha_H = 1, beta_H = 0 (G_H = Q_H). The one-step target is not of this form (it
    bootstraps from Q_{t+1}, not G_{t+1}).
    """
    if kind not in ("lambda", "multi_step"):
        raise ValueError(f"kind must be 'lambda' or 'multi_step', got {kind!r}")
    t = np.arange(horizon)
    if kind == "lambda":
        c = np.array([sum(lam**k for k in range(horizon - i)) for i in t], dtype=np.float64)
        alpha, beta = 1.0 / (1.0 + lam * c), lam * c / (1.0 + lam * c)
    else:
        alpha, beta = np.zeros(horizon), np.ones(horizon)
    return np.append(alpha, 1.0), np.append(beta, 0.0)


def recursive_returns(
    rewards: jax.Array,
    q_values: jax.Array,
    alive: jax.Array,
    gamma: float,
    alpha: jax.Array,
    beta: jax.Array,
) -> jax.Array:
    """G_H = Q_H, G_t = alpha_t Q_t + beta_t (m_t r_t + gamma m_{t+1} G_{t+1}) -> [H+1, B].

    Unlike the targets above, the result includes G_H = Q_H (the actor uses all H+1 steps).
    """
    alpha = jnp.asarray(alpha, q_values.dtype)
    beta = jnp.asarray(beta, q_values.dtype)

    def step(g_next, xs):
        r, q, m, m_next, a, b = xs
        g = a * q + b * (m * r + gamma * m_next * g_next)
        return g, g

    xs = (rewards, q_values[:-1], alive[:-1], alive[1:], alpha[:-1], beta[:-1])
    _, g = jax.lax.scan(step, q_values[-1], xs, reverse=True)
    return jnp.concatenate([g, q_values[-1:]], axis=0)


def returns_for_kind(
    kind: str,
    rewards: jax.Array,
    q_values: jax.Array,
    alive: jax.Array,
    dones: jax.Array,
    gamma: float,
    lam: float,
) -> jax.Array:
    """The critic/actor target of ablation `kind`, for t = 0..H-1, shape [H, B]."""
    if kind == "lambda":
        return lambda_returns(rewards, q_values, alive, gamma, lam)
    if kind == "multi_step":
        return n_step_returns(rewards, q_values, alive, gamma)
    if kind == "one_step":
        return one_step_targets(rewards, q_values, dones, gamma)
    raise ValueError(f"kind must be one of {RETURN_KINDS}, got {kind!r}")
