"""The DPG actor of LEQ through the RSSM (option `leq_pixels.actor_objective: dpg`).

As in the state version ("Policy objective"): from the start latents the
deterministic actor a_t = tanh(mean(s_t)) + delta_t rolls through the frozen model with fixed
keys (prior heads and straight-through samples), G_t is the continue-masked lambda-return
(G_H = Q_H), and g_t = d G_t / d delta_t at delta = 0 is the TOTAL derivative of step t's
return with respect to its own action: later latents respond through the model and later
actions through the policy. The surrogate

    L(theta) = - sum_t mean_n [ omega_t sg(g_t) . tanh(mean_theta(s_t)) ],
    omega_t = tau if G_t > Q_t else 1 - tau (t < H), omega_H = 1/2

has the per-step deterministic policy gradient as its gradient. The diagonal blocks come from
the Jacobian of the H+1 returns with respect to the H+1 perturbations: H+1 backward passes,
affordable at LEQ_DV3's horizon of 5.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from agent.losses import dpg_surrogate as shared_dpg_surrogate
from agent.losses import policy_step_weights
from agent.returns import continue_lambda_returns

sg = jax.lax.stop_gradient


class DpgRollout(NamedTuple):
    grads: jax.Array  # g_t, [H+1, N, A]
    returns: jax.Array  # G_t, [H+1, N] (G_H = Q_H)
    q_values: jax.Array  # Q_t, [H+1, N]
    feats: jax.Array  # s_t's features, [H+1, N, F]


def action_gradients(
    world: Any,
    params: Any,
    act_fn: Callable,
    q_fn: Callable,
    start: Any,
    key: jax.Array,
    horizon: int,
    lam: float,
    masks: str = "cumulative",
) -> DpgRollout:
    """g_t = dG_t / d delta_t for every step (module docstring); act_fn(feat) -> action,
    q_fn(feat, action) -> Q, start: latents [N, ...]; `masks` as continue_lambda_returns."""
    keys = jax.random.split(key, horizon)

    def rollout(delta):
        def step(latent, xs):
            d, k = xs
            feat = world.features(params, latent)
            action = jnp.clip(act_fn(feat) + d, -1.0, 1.0)
            q = q_fn(feat, action)
            latent, reward, cont = world.imagine_step(params, latent, action, k)
            return latent, (feat, q, reward, cont)

        last, (feats, qs, rewards, conts) = jax.lax.scan(step, start, (delta[:-1], keys))
        last_feat = world.features(params, last)
        q_last = q_fn(last_feat, jnp.clip(act_fn(last_feat) + delta[-1], -1.0, 1.0))
        q = jnp.concatenate([qs, q_last[None]], axis=0)
        returns = jnp.concatenate(
            [continue_lambda_returns(rewards, conts, q, lam, masks), q_last[None]], axis=0
        )
        feats = jnp.concatenate([feats, last_feat[None]], axis=0)
        return jnp.sum(returns, axis=1), (returns, q, feats)

    n = jax.tree.leaves(start)[0].shape[0]
    act_dim = jax.eval_shape(act_fn, jnp.zeros((n, world.cfg.feature_dim))).shape[-1]
    delta = jnp.zeros((horizon + 1, n, act_dim))
    jac, (returns, q, feats) = jax.jacrev(rollout, has_aux=True)(delta)  # [H+1, H+1, N, A]
    steps = jnp.arange(horizon + 1)
    return DpgRollout(sg(jac[steps, steps]), sg(returns), sg(q), sg(feats))


def dpg_surrogate(
    actions: jax.Array, grads: jax.Array, returns: jax.Array, q_values: jax.Array, tau: float
) -> jax.Array:
    """-sum_t mean_n omega_t sg(g_t) . a_t for the actor's actions a_t [H+1, N, A]."""
    omega = policy_step_weights(returns, q_values, tau)
    return shared_dpg_surrogate(actions, grads, omega)
