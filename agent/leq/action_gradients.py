"""Per-step action gradients g_t = dQ^lambda_t / da_t for LEQ's actor.

The derivative is total: a_t moves r_t, Q_t and s_{t+1}; later states respond through the model
(its noise and member choice fixed by the same keys) and later actions through the fixed policy,
a_{t+k} = pi(s_{t+k}). Formally g_t = d G_t / d delta_t at delta = 0 for the rollout
a_t = pi(s_t) + delta_t of imagination.py, G_t being the return of `kind` (G_H = Q_H).

`reference` takes the Jacobian of all H+1 returns w.r.t. all H+1 perturbations and keeps its
diagonal blocks: H+1 backward passes through the rollout. `production` gets all H+1 gradients
from ONE backward pass; see its docstring for the derivation. Both return `ActionGradients`.
`production_policy_grad` also returns the actor surrogate's parameter gradient from that pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from agent.leq.imagination import ActorFn, WorldStep, imagine
from agent.leq.losses import policy_step_weights
from agent.leq.returns import n_step_returns, return_coefficients
from agent.losses import dpg_surrogate
from agent.returns import lambda_returns

CriticFn = Callable[[jax.Array, jax.Array], jax.Array]  # (obs [..., obs], act [..., act]) -> [...]


class ActionGradients(NamedTuple):
    grads: jax.Array  # g_t = dG_t / da_t, [H+1, B, act]
    returns: jax.Array  # G_t, [H+1, B]: Q^lambda_t for t < H, G_H = Q_H
    q_values: jax.Array  # Q_t = Q(s_t, a_t), [H+1, B]
    rollout: dict  # imagine(...) output (obs, actions, rewards, dones, alive)


def _returns_with_tail(
    kind: str, rewards: jax.Array, q: jax.Array, alive: jax.Array, gamma: float, lam: float
) -> jax.Array:
    """G_t for t = 0..H ([H+1, B]); G_H = Q_H."""
    if kind == "lambda":
        g = lambda_returns(rewards, q, alive, gamma, lam)
    elif kind == "multi_step":
        g = n_step_returns(rewards, q, alive, gamma)
    else:
        raise ValueError(f"kind must be 'lambda' or 'multi_step', got {kind!r}")
    return jnp.concatenate([g, q[-1:]], axis=0)


def _zero_delta(actor_fn: ActorFn, start_obs: jax.Array, horizon: int) -> jax.Array:
    act = jax.eval_shape(actor_fn, start_obs)
    act = act[0] if isinstance(act, tuple) else act
    return jnp.zeros((horizon + 1, *act.shape), act.dtype)


def reference(
    actor_fn: ActorFn,
    critic_fn: CriticFn,
    world_step: WorldStep,
    start_obs: jax.Array,
    key: jax.Array,
    horizon: int,
    gamma: float,
    lam: float,
    kind: str = "lambda",
    unroll: int | bool = 1,
) -> ActionGradients:
    """g_t = [dG_t / d delta]_{(t, t) block}, by jax.jacrev over all H+1 outputs.

    Batch elements never interact (model_step, actor and critic act row by row), so
    d(sum_b G_t[b]) / d delta_k[b'] = dG_t[b'] / d delta_k[b']: differentiating the batch sums
    gives every element's Jacobian at once, [H+1 outputs, H+1, B, act], whose diagonal t = k is
    g_t. Cost: one forward and H+1 backward passes through the whole rollout.
    """

    def summed_returns(delta):
        ro = imagine(actor_fn, world_step, start_obs, key, horizon, delta, unroll=unroll)
        q = critic_fn(ro["obs"], ro["actions"])
        g = _returns_with_tail(kind, ro["rewards"], q, ro["alive"], gamma, lam)
        return g.sum(axis=1), (ro, q, g)

    delta = _zero_delta(actor_fn, start_obs, horizon)
    jac, (ro, q, g) = jax.jacrev(summed_returns, has_aux=True)(delta)
    steps = jnp.arange(horizon + 1)
    return ActionGradients(jac[steps, steps], g, q, ro)


@jax.custom_vjp
def scale_cotangent(x: jax.Array, scale: jax.Array) -> jax.Array:
    """Identity forward; backward multiplies x's cotangent by `scale` (broadcast from the left).

    Where scale == 0 the cotangent is set to exactly 0 (a select, not a product), so NaN/inf
    Jacobians of terminated, possibly diverged, states cannot leak into live steps.
    """
    return x


def _scale_fwd(x, scale):
    return x, scale


def _scale_bwd(scale, ct):
    s = scale.reshape(scale.shape + (1,) * (ct.ndim - scale.ndim)).astype(ct.dtype)
    return jnp.where(s != 0, ct * s, jnp.zeros_like(ct)), jnp.zeros_like(scale)


scale_cotangent.defvjp(_scale_fwd, _scale_bwd)


def _one_sweep(
    make_actor: Callable[[Any], ActorFn],
    actor_params: Any,
    critic_fn: CriticFn,
    world_step: WorldStep,
    start_obs: jax.Array,
    key: jax.Array,
    horizon: int,
    gamma: float,
    lam: float,
    kind: str,
    unroll: int | bool,
    extra_cotangent: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> tuple[ActionGradients, Any]:
    """The single forward + backward pass shared by `production` and `production_policy_grad`.

    Returns the action gradients and the cotangent reaching `actor_params` (None for None).
    `extra_cotangent(returns, q_values)` gives the cotangent of rollout["actor_extra"].
    """
    alpha, beta = (jnp.asarray(c, start_obs.dtype) for c in return_coefficients(kind, horizon, lam))
    link_gain = gamma * beta[:-1]  # kappa_t / m_{t+1}

    def link(next_obs, next_alive, t):
        return scale_cotangent(next_obs, link_gain[t] * next_alive)

    def forward(delta, params):
        actor_fn = make_actor(params)
        ro = imagine(actor_fn, world_step, start_obs, key, horizon, delta, link, unroll)
        q = critic_fn(ro["obs"], ro["actions"])
        return (q, ro["rewards"], ro.get("actor_extra")), ro

    delta = _zero_delta(make_actor(actor_params), start_obs, horizon)
    (q, rewards, extra), pullback, ro = jax.vjp(forward, delta, actor_params, has_aux=True)
    q_const, r_const = jax.lax.stop_gradient(q), jax.lax.stop_gradient(rewards)
    g = _returns_with_tail(kind, r_const, q_const, ro["alive"], gamma, lam)
    q_bar = jnp.broadcast_to(alpha[:, None], q.shape).astype(q.dtype)
    r_bar = (beta[:-1, None] * ro["alive"][:-1]).astype(rewards.dtype)
    extra_bar = None if extra is None else extra_cotangent(g, q_const)
    grads, param_bar = pullback((q_bar, r_bar, extra_bar))
    ro = {k: v for k, v in ro.items() if k != "actor_extra"}
    return ActionGradients(grads, g, q_const, jax.lax.stop_gradient(ro)), param_bar


def production(
    actor_fn: ActorFn,
    critic_fn: CriticFn,
    world_step: WorldStep,
    start_obs: jax.Array,
    key: jax.Array,
    horizon: int,
    gamma: float,
    lam: float,
    kind: str = "lambda",
    unroll: int | bool = 1,
) -> ActionGradients:
    """All g_t = dG_t / da_t, t = 0..H, from one forward and ONE backward pass of the rollout.

    Write the return as G_t = alpha_t Q_t + beta_t (m_t r_t + gamma m_{t+1} G_{t+1}) with
    constants (alpha, beta) (returns.return_coefficients) and masks m constant (bool dones).
    Let V_t(s) be G_t as a function of s_t = s with every later action given by the policy, and
    nu_t = dV_t/ds_t. With (Q_t, r_t, s_{t+1}) = h(s_t, a_t) and J_s, J_a the Jacobians of
    s_{t+1} = f(s_t, clip(a_t)):

        g_t  = alpha_t dQ_t/da + beta_t m_t dr_t/da + kappa_t J_a^T nu_{t+1}
        nu_t = alpha_t dQ_t/ds + beta_t m_t dr_t/ds + kappa_t J_s^T nu_{t+1} + (dpi/ds)^T g_t
        g_H  = dQ_H/da,  nu_H = dQ_H/ds + (dpi/ds)^T g_H,      kappa_t = beta_t gamma m_{t+1}

    That is exactly ordinary reverse-mode AD of the scalar
        S = sum_{t=0}^{H} alpha_t Q_t + sum_{t<H} beta_t m_t r_t
    w.r.t. delta, through a graph identical to the rollout except that the cotangent flowing
    from s_{t+1} back into step t is multiplied by kappa_t (`scale_cotangent` on every link):
    the cotangent reaching s_t is then nu_t and the one reaching a_t (= delta_t) is g_t. (Without
    the rescaling, plain AD of sum_t G_t would give sum_{k<=t} dG_k/d delta_t instead.) Forward
    values are untouched, so one jax.vjp yields the rollout, Q_t and G_t as well.
    Arithmetic: one forward of model, actor and critic over H steps plus one backward; the
    reference needs H+1 backward passes.
    """
    out, _ = _one_sweep(
        lambda _: actor_fn, None, critic_fn, world_step, start_obs, key,
        horizon, gamma, lam, kind, unroll,
    )  # fmt: skip
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _policy_tap(apply: Callable, params: Any, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(pi_params(obs), zeros [B]). The zeros are a probe: its cotangent w [B] (nonzero) reweights
    the parameter cotangent per sample, params_bar = J_params^T (w * ct), obs_bar = J_obs^T ct.

    One backward pass serves both: samples are independent, so back-propagating w * ct gives
    per-sample obs cotangents w_b * (J_obs^T ct)_b, and dividing by w_b recovers obs_bar.
    """
    return apply(params, obs), jnp.zeros(obs.shape[:-1], obs.dtype)


def _policy_tap_fwd(apply, params, obs):
    action, pullback = jax.vjp(apply, params, obs)  # keeps the forward's residuals
    return (action, jnp.zeros(obs.shape[:-1], obs.dtype)), pullback


def _policy_tap_bwd(apply, pullback, cts):
    ct, weight = cts
    weight = weight[..., None]
    params_bar, weighted_obs_bar = pullback(ct * weight)
    return params_bar, weighted_obs_bar / weight


_policy_tap.defvjp(_policy_tap_fwd, _policy_tap_bwd)


class PolicyGradient(NamedTuple):
    action_grads: ActionGradients
    omega: jax.Array  # [H+1, B] surrogate step weights
    loss: jax.Array  # L_pi at the current params
    param_grads: Any  # grad_theta L_pi, same structure as the actor params


def production_policy_grad(
    actor_apply: Callable[[Any, jax.Array], jax.Array],
    actor_params: Any,
    critic_fn: CriticFn,
    world_step: WorldStep,
    start_obs: jax.Array,
    key: jax.Array,
    horizon: int,
    gamma: float,
    lam: float,
    tau: float,
    expectile: bool = True,
    kind: str = "lambda",
    unroll: int | bool = 1,
) -> PolicyGradient:
    """`production` plus grad_theta of the surrogate L_pi = -sum_t mean_b[omega_t sg(g_t).pi(s_t)]
    in the same backward pass.

    In that pass the cotangent reaching the policy output pi_theta(s_t) is exactly g_t, so
    grad_theta L_pi = -(1/B) sum_{t,b} omega_{t,b} J_theta(s_{t,b})^T g_{t,b} only needs the
    per-sample weights omega on the parameter branch of every policy call (`_policy_tap`).
    This reuses the rollout's policy forward and backward instead of re-running pi (forward and
    backward) on all (H+1) B states. Needs 0 < tau < 1 (omega must be nonzero) and an actor
    that treats batch rows independently. actor_apply(params, obs) -> deterministic action.
    """
    if isinstance(tau, int | float) and not 0.0 < tau < 1.0:
        raise ValueError(f"production_policy_grad needs 0 < tau < 1, got {tau}")
    make_actor = lambda params: functools.partial(_policy_tap, actor_apply, params)
    weights = lambda g, q: policy_step_weights(g, q, tau, expectile)
    out, param_bar = _one_sweep(
        make_actor, actor_params, critic_fn, world_step, start_obs, key,
        horizon, gamma, lam, kind, unroll, weights,
    )  # fmt: skip
    batch = start_obs.shape[0]
    param_grads = jax.tree_util.tree_map(lambda x: -x / batch, param_bar)
    omega = policy_step_weights(out.returns, out.q_values, tau, expectile)
    loss = dpg_surrogate(out.rollout["actions"], out.grads, omega)
    return PolicyGradient(out, omega, loss, param_grads)
