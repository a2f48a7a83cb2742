"""LEQ losses (code form).

Critic:   L_Q = (1 - beta) L_env + beta L_model + beta R_model + (1 - beta) R_env
Actor:    L_pi = - sum_{t=0}^{H} mean_b[ omega_t sg(g_t) . pi_theta(s_t) ]   (agent/losses.py
          `dpg_surrogate`, with the step weights of `policy_step_weights`)

`expectile=False` everywhere replaces tau by 0.5 (symmetric weights, i.e. plain 0.5 * MSE), which
is the "no lower expectile" ablation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agent import losses as shared


def effective_tau(tau: float, expectile: bool = True) -> float:
    """tau when the lower-expectile switch is on, else 0.5 (symmetric)."""
    return tau if expectile else 0.5


def imagined_loss_weights(alive: jax.Array, gamma: float) -> jax.Array:
    """w_t = gamma^t m_t for t = 0..H-1: alive [H+1, B] -> [H, B]."""
    horizon = alive.shape[0] - 1
    discounts = gamma ** jnp.arange(horizon, dtype=alive.dtype)
    return discounts[:, None] * alive[:-1]


def model_critic_loss(
    targets: jax.Array,
    q_pred: jax.Array,
    weights: jax.Array,
    tau: float,
    expectile: bool = True,
) -> jax.Array:
    """L_model = mean_{t<H, b}[ w_t L^tau(sg(Q^lambda_t), Q_phi(s_t, a_t)) ] (mean over H*B)."""
    tau = effective_tau(tau, expectile)
    targets = jax.lax.stop_gradient(targets)
    return jnp.mean(weights * shared.expectile_loss(targets - q_pred, tau))


def env_targets(
    rewards: jax.Array, not_done: jax.Array, next_q: jax.Array, gamma: float
) -> jax.Array:
    """y_env = r + gamma (1 - d) Q_phi(s', pi(s')) (current critic; a constant in the loss)."""
    return jax.lax.stop_gradient(rewards + gamma * not_done * next_q)


def env_critic_loss(y_env: jax.Array, q_pred: jax.Array) -> jax.Array:
    """L_env = mean_b[ 0.5 (y_env - Q_phi(s, a))^2 ] (= expectile loss at tau = 0.5)."""
    return jnp.mean(0.5 * jnp.square(jax.lax.stop_gradient(y_env) - q_pred))


def ema_regulariser(
    q_ema: jax.Array, q_pred: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
    """R = mean[ w (Qbar(s, a) - Q_phi(s, a))^2 ]; w = 1 (R_env) or w_t = gamma^t m_t (R_model)."""
    sq = jnp.square(jax.lax.stop_gradient(q_ema) - q_pred)
    return jnp.mean(sq if weights is None else weights * sq)


def critic_loss(
    l_env: jax.Array,
    l_model: jax.Array,
    r_env: jax.Array,
    r_model: jax.Array,
    beta: float,
    ema_weight: float = 1.0,
) -> jax.Array:
    """L_Q = (1 - beta) (L_env + w R_env) + beta (L_model + w R_model); w = omega_EMA, 1 in the
    official code."""
    return (1.0 - beta) * (l_env + ema_weight * r_env) + beta * (l_model + ema_weight * r_model)


def policy_step_weights(
    returns: jax.Array, q_values: jax.Array, tau: float, expectile: bool = True
) -> jax.Array:
    """omega_t = tau if Q^lambda_t > Q_t else 1 - tau (t < H), omega_H = 0.5 -> [H+1, B]
    (agent/losses.py), with tau = 0.5 when the lower-expectile switch is off."""
    return shared.policy_step_weights(returns, q_values, effective_tau(tau, expectile))
