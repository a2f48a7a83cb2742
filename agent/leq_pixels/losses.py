"""The losses of LEQ from pixels, as pure functions.

Shapes: imagined steps [T, N] (the critic: t = 0..H-1; value and actor: t = 0..H, with
G_H = Q_H), two-hot logits [.., bins]; `weights` are the trajectory weights prod_{k<=t} c_k
(agent/returns.py `trajectory_weights`), held constant; w_t is the shared expectile weight
(agent/losses.py `expectile_weight`, ties to 1 - tau).

    critic (imagined)  -sg(weight_t) [ w_t log p_Q(G_t | s_t, a_t)
                                       + slowreg log p_Q(Qslow_t | s_t, a_t) ],
                       w_t = tau if Q_t < G_t else 1 - tau   (the lower expectile of the return)
    critic (data)      -[ log p_Q(y_t | s_t, a_t) + slowreg log p_Q(Qslow_t | s_t, a_t) ],
                       y_t = r_t + m_t (1 - 1/horizon) Q(s_{t+1}, a' ~ pi)   on replay windows
    value              -sg(weight_t) log p_V(Q_t | s_t)
    actor (REINFORCE)  -sg(weight_t) [ log pi(a_t | s_t) sg(w_t (G_t - V_t) / S)
                                       + eta H_t ],
                       H_t = -log pi(tanh(u_t) | s_t) at u_t = mean(s_t) + std(s_t) eps_t, the
                       rollout's draw reparameterised, so the bonus has a gradient (LEQ_DV3's)
                       w_t = tau if G_t > Q_t else 1 - tau,  S = max(1, P95(G) - P5(G))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agent.distributions import gaussian_log_prob, tanh_log_det, twohot_log_prob
from agent.losses import expectile_weight

sg = jax.lax.stop_gradient
LOG_2PI_E = jnp.log(2.0 * jnp.pi * jnp.e)


def imagined_critic_loss(
    logits: jax.Array,
    returns: jax.Array,
    q_mean: jax.Array,
    slow_mean: jax.Array,
    weights: jax.Array,
    tau: float,
    slowreg: float,
    bins: jax.Array,
) -> jax.Array:
    """Mean over [H, N] of the imagined critic loss of the module docstring."""
    w = expectile_weight(returns - q_mean, tau)
    nll = -(
        w * twohot_log_prob(logits, sg(returns), bins)
        + slowreg * twohot_log_prob(logits, sg(slow_mean), bins)
    )
    return jnp.mean(sg(weights) * nll)


def data_critic_loss(
    logits: jax.Array, targets: jax.Array, slow_mean: jax.Array, slowreg: float, bins: jax.Array
) -> jax.Array:
    """Mean of the replay critic loss: two-hot regression onto the one-step targets."""
    nll = -(
        twohot_log_prob(logits, sg(targets), bins)
        + slowreg * twohot_log_prob(logits, sg(slow_mean), bins)
    )
    return jnp.mean(nll)


def data_targets(
    rewards: jax.Array, masks: jax.Array, next_q: jax.Array, cont_horizon: float
) -> jax.Array:
    """y_t = r_t + m_t (1 - 1/horizon) Q(s_{t+1}, a'): the continue head's discount, applied
    to real transitions."""
    return rewards + masks * (1.0 - 1.0 / cont_horizon) * next_q


def value_loss(logits: jax.Array, q_values: jax.Array, weights: jax.Array, bins: jax.Array):
    """Mean of -sg(weight_t) log p_V(Q_t | s_t): V regresses onto the imagined Q values."""
    return jnp.mean(sg(weights) * -twohot_log_prob(logits, sg(q_values), bins))


def tanh_gaussian_log_prob(u: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """log pi(tanh(u)) = sum_i [ log N(u_i; mean_i, std_i^2) - log(1 - tanh(u_i)^2) ]."""
    return gaussian_log_prob(u, mean, jnp.log(std)) - tanh_log_det(u)


def sampled_entropy(u: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """H = -log pi(tanh(u)) at u = mean + std * eps (u computed from the actor's outputs): a
    one-sample entropy estimate whose gradient flows through the sample as well as the density,
    dH/d std_i = 1 / std_i - 2 tanh(u_i) eps_i and dH/d mean_i = -2 tanh(u_i). At a stored,
    stop-gradient sample the bonus would only shift the advantage and its expected gradient
    would be zero."""
    return -tanh_gaussian_log_prob(u, mean, std)


def gaussian_entropy(std: jax.Array) -> jax.Array:
    """Entropy of the pre-tanh Gaussian, sum_i 0.5 log(2 pi e std_i^2) (the tanh's own
    correction has no closed form); the DPG actor's entropy metric."""
    return jnp.sum(0.5 * LOG_2PI_E + jnp.log(std), axis=-1)


def actor_loss(
    log_prob: jax.Array,
    entropy: jax.Array,
    returns: jax.Array,
    q_mean: jax.Array,
    baseline: jax.Array,
    weights: jax.Array,
    scale: jax.Array,
    tau: float,
    entropy_coef: float,
) -> jax.Array:
    """Mean over [H+1, N] of LEQ_DV3's REINFORCE actor loss (module docstring)."""
    w = expectile_weight(returns - q_mean, tau)
    advantage = sg(w * (returns - baseline) / scale)
    return jnp.mean(sg(weights) * -(log_prob * advantage + entropy_coef * entropy))


def reparameterised_terms(
    mean: jax.Array, std: jax.Array, noise: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(log_prob, entropy) of the REINFORCE actor loss for the actor's (mean, std) at the
    imagined states and the rollout's draws `noise`: u = mean + std * noise is the rollout's
    pre-tanh sample, reparameterised; log pi is taken at sg(u) (the score-function term) and the
    entropy bonus at u itself (`sampled_entropy`)."""
    u = mean + std * noise
    return tanh_gaussian_log_prob(sg(u), mean, std), sampled_entropy(u, mean, std)
