"""Losses, targets and weights that more than one method uses, as pure functions.

Notation: u = target - prediction, tau the expectile level, B the batch, K the critics,
H the imagination horizon; Q' are target critics, pi' the target actor.

    expectile weight     w_tau(u) = tau if u > 0 else 1 - tau        (= |tau - 1(u <= 0)|)
    expectile loss       L_tau(u) = w_tau(u) u^2
    twin critic loss     L_Q = sum_k mean_b (Q_k(s_b, a_b) - y_b)^2
    smoothed action      a~' = clip(pi'(s') + clip(N(0, sigma^2), -c, c), -1, 1)
    clipped double Q     y = r + gamma m min_k Q'_k(s', a~')
    tanh-Gaussian        a = tanh(mu + sigma eps), log pi(a|s) = log N(u; mu, sigma) - log|tanh'(u)|
    behaviour cloning    L_BC = mean_b ||pi(s_b) - a_b||^2
    DPG surrogate        L_pi = -sum_t mean_b omega_t sg(g_t) . pi(s_t)

The expectile weight breaks the tie u = 0 towards 1 - tau, as the official LEQ code
(`common.py : expectile_loss`) does. In a loss w u^2 the tie is invisible
(the loss and its gradient are 0 there); it only matters where the weight multiplies something
else (LEQ's actor weights, LEQ-pixels' two-hot critic).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agent.distributions import gaussian_log_prob, tanh_log_det


def expectile_weight(u: jax.Array, tau: float | jax.Array) -> jax.Array:
    """w_tau(u) = tau where u > 0, 1 - tau where u <= 0 (elementwise; u = target - pred)."""
    return jnp.where(u > 0, tau, 1.0 - tau)


def expectile_loss(u: jax.Array, tau: float | jax.Array) -> jax.Array:
    """L_tau(u) = w_tau(u) u^2, elementwise. Minimised over a constant prediction it gives the
    tau-expectile of the targets (tau < 0.5: below their mean; tau = 0.5: 0.5 u^2)."""
    return expectile_weight(u, tau) * jnp.square(u)


def twin_critic_loss(q: jax.Array, targets: jax.Array) -> jax.Array:
    """L_Q = sum_k mean_b (Q_k(s_b, a_b) - y_b)^2; q [B, K], targets [B]."""
    return jnp.sum(jnp.mean(jnp.square(q - targets[:, None]), axis=0))


def smoothed_target_actions(
    actions: jax.Array, key: jax.Array, noise: float, noise_clip: float
) -> jax.Array:
    """Target policy smoothing: clip(a + clip(eps, -c, c), -1, 1), eps ~ N(0, noise^2), c =
    noise_clip; actions [B, A]."""
    eps = noise * jax.random.normal(key, actions.shape, actions.dtype)
    return smooth_actions(actions, eps, noise_clip)


def smooth_actions(actions: jax.Array, eps: jax.Array, noise_clip: float) -> jax.Array:
    """clip(a + clip(eps, -c, c), -1, 1) for drawn noise eps [B, A] (already scaled)."""
    return jnp.clip(actions + jnp.clip(eps, -noise_clip, noise_clip), -1.0, 1.0)


def clipped_double_q_targets(
    rewards: jax.Array, masks: jax.Array, next_q: jax.Array, gamma: float
) -> jax.Array:
    """y = r + gamma m min_k Q'_k(s', a~'); rewards, masks [B], next_q [B, K] -> [B]."""
    return rewards + gamma * masks * jnp.min(next_q, axis=-1)


def sample_tanh_gaussian(
    mean: jax.Array, log_std: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(a = tanh(u), log pi(a|s)), u = mean + exp(log_std) eps (reparameterised):

    log pi(a|s) = sum_i [ log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2) ]."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    return jnp.tanh(u), gaussian_log_prob(u, mean, log_std) - tanh_log_det(u)


def bc_loss(predicted: jax.Array, target: jax.Array) -> jax.Array:
    """L_BC = mean_b sum_i (pi(s_b)_i - a_b,i)^2: [B, A], [B, A] -> scalar."""
    return jnp.mean(jnp.sum(jnp.square(predicted - target), axis=-1))


def policy_step_weights(returns: jax.Array, q_values: jax.Array, tau: float) -> jax.Array:
    """omega_t = w_tau(G_t - Q_t) for t < H, omega_H = 1/2, held constant -> [H+1, B].

    returns: G_t [H, B] (or [H+1, B]; row H is ignored); q_values: Q_t [H+1, B]. The weights
    of the lower-expectile policy objective: tau where the return beats
    the critic, 1 - tau elsewhere."""
    horizon = q_values.shape[0] - 1
    omega = expectile_weight(returns[:horizon] - q_values[:horizon], tau)
    last = jnp.full_like(q_values[-1:], 0.5)
    return jax.lax.stop_gradient(jnp.concatenate([omega.astype(q_values.dtype), last], axis=0))


def dpg_surrogate(
    policy_actions: jax.Array, action_grads: jax.Array, omega: jax.Array
) -> jax.Array:
    """L_pi = -sum_t mean_b[ omega_t sg(g_t) . pi_theta(s_t) ].

    policy_actions: pi_theta(s_t) [H+1, B, A] (the only path the gradient flows through; feed
    it stop-gradient states); action_grads: g_t = dG_t / da_t [H+1, B, A]; omega [H+1, B].
    Its gradient is the per-step deterministic policy gradient
    - sum_t mean_b[ omega_t g_t^T dpi_theta(s_t)/dtheta ]."""
    g = jax.lax.stop_gradient(action_grads)
    w = jax.lax.stop_gradient(omega)
    per_step = jnp.sum(g * policy_actions, axis=-1)  # [H+1, B]
    return -jnp.sum(jnp.mean(w * per_step, axis=1))
