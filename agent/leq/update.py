"""LEQ's pure update functions, built once per run.

Every function here is `fn(state, batch, ...) -> (state, metrics)` or a pure helper; the agent
(`agent/leq/agent.py`) fuses them into multi-step `lax.scan` chunks. One LEQ update is:

1. actor step on a D_model minibatch: imagine H steps with the deterministic actor, compute
   g_t = dQ^lambda_t / da_t for every t in one backward sweep (`action_gradients`), and descend
   L_pi = -sum_t mean_b[ omega_t sg(g_t) . pi(s_t) ];
2. critic step with the PRE-update actor and another key: lower-expectile regression onto
   lambda-returns of imagined pairs (weights gamma^t m_t), 0.5 MSE Bellman loss on dataset pairs,
   EMA regularisers on both, combined with beta; then Qbar <- rate phi + (1 - rate) Qbar.

With `shared_rollout` the critic step reuses the actor step's rollout (its forward values: the
pre-update actor through the model with the actor's key) instead of imagining a second one. That
is exactly the separate form run with one key for both steps, minus one imagined rollout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agent.leq import action_gradients, imagination, losses, networks, returns
from agent.leq.imagination import WorldStep
from agent.losses import bc_loss, dpg_surrogate
from agent.optimizers import apply_gradients, apply_updates

POLICY_OBJECTIVES = ("lambda", "multi_step", "one_step")
CRITIC_TARGETS = ("lambda", "multi_step", "one_step")


@dataclass(frozen=True)
class LEQHyper:
    """Static hyper-parameters of the LEQ updates (defaults: the official code, §3.9)."""

    gamma: float = 0.997
    lam: float = 0.95
    horizon: int = 10
    tau: float = 0.1
    beta: float = 0.25
    ema_rate: float = 0.005
    ema_weight: float = 1.0  # omega_EMA: weight of the EMA regulariser in the critic and FQE losses
    expectile: bool = True
    policy_objective: str = "lambda"
    critic_target: str = "lambda"
    unroll: bool = True  # unrolled H-step scans: a little faster on CPU, exact XLA flop counts
    shared_rollout: bool = False  # the critic step reuses the actor step's rollout (one key)


class Nets(NamedTuple):
    """The actor and critic transforms plus their optimisers."""

    actor: Any
    critic: Any
    actor_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation


class ActorCritic(NamedTuple):
    """The part of the agent state the LEQ update changes."""

    actor: Any
    critic: Any
    ema: Any
    actor_opt: Any
    critic_opt: Any


ACTOR_LR_SCHEDULES = ("cosine", "constant")


def make_nets(
    act_dim: int,
    hidden: tuple[int, ...],
    actor_lr: float,
    critic_lr: float,
    decay_steps: int,
    actor_lr_schedule: str = "cosine",
) -> Nets:
    """Actor (Adam; lr cosine-decayed to 0 over `decay_steps` as the official code, or constant)
    and critic (Adam, constant lr)."""
    if actor_lr_schedule == "cosine":
        actor_tx = optax.adam(optax.cosine_decay_schedule(actor_lr, max(decay_steps, 1)))
    else:
        actor_tx = optax.adam(actor_lr)
    return Nets(
        networks.make_actor(act_dim, hidden),
        networks.make_critic(hidden),
        actor_tx,
        optax.adam(critic_lr),
    )


def policy_fn(nets: Nets, params: Any, scaler: tuple) -> Callable[[jax.Array], jax.Array]:
    """obs -> tanh(mu(obs)), the deterministic actor."""
    return lambda obs: networks.deterministic_action(nets.actor.apply(params, obs, *scaler)[0])


def q_fn(nets: Nets, params: Any, scaler: tuple) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """(obs, action) -> Q(obs, action)."""
    return lambda obs, act: nets.critic.apply(params, obs, act, *scaler)


def actor_step(
    nets: Nets,
    hyper: LEQHyper,
    world_step: WorldStep,
    ac: ActorCritic,
    scaler: tuple,
    start_obs: jax.Array,
    key: jax.Array,
    variant: str = "production",
) -> tuple[Any, Any, dict, dict]:
    """One policy step (§3.4 policy objective) -> (actor, optimiser state, metrics, rollout).

    `rollout` is the imagined rollout of the pre-update actor that the step used (constants).
    `variant="reference"` takes the per-step gradients from `jax.jacrev` (H+1 backward passes)
    instead of one sweep: same result."""
    critic = q_fn(nets, ac.critic, scaler)
    apply = lambda params, obs: policy_fn(nets, params, scaler)(obs)
    if hyper.policy_objective == "one_step":
        loss, grads, metrics, rollout = _one_step_policy(
            nets, hyper, world_step, ac, scaler, start_obs, key
        )
    else:
        args = (critic, world_step, start_obs, key, hyper.horizon)
        args += (hyper.gamma, hyper.lam)
        kind = hyper.policy_objective
        if variant == "production":
            pg = action_gradients.production_policy_grad(
                apply, ac.actor, *args, hyper.tau, hyper.expectile, kind, hyper.unroll
            )
            loss, grads, ag = pg.loss, pg.param_grads, pg.action_grads
        else:
            actor_fn = functools.partial(apply, ac.actor)
            ag = action_gradients.reference(actor_fn, *args, kind, hyper.unroll)
            omega = losses.policy_step_weights(ag.returns, ag.q_values, hyper.tau, hyper.expectile)
            states = jax.lax.stop_gradient(ag.rollout["obs"])
            surrogate = lambda p: dpg_surrogate(apply(p, states), ag.grads, omega)
            loss, grads = jax.value_and_grad(surrogate)(ac.actor)
        rollout = ag.rollout
        metrics = {
            "train/imagined_return": jnp.mean(ag.returns[0]),
            "train/imagined_reward": jnp.mean(ag.rollout["rewards"]),
            "train/imagined_alive": jnp.mean(ag.rollout["alive"][-1]),
        }
    actor, actor_opt, norm = apply_updates(nets.actor_tx, ac.actor, ac.actor_opt, grads)
    metrics["train/actor_loss"] = loss
    metrics["train/actor_grad_norm"] = norm
    return actor, actor_opt, metrics, rollout


def _one_step_policy(nets, hyper, world_step, ac, scaler, start_obs, key):
    """Ablation: maximise Q(s_t, pi(s_t)) on imagined states (no lambda-return, no expectile)."""
    actor_fn = policy_fn(nets, ac.actor, scaler)
    ro = imagination.imagine(
        actor_fn, world_step, start_obs, key, hyper.horizon, unroll=hyper.unroll
    )
    states = jax.lax.stop_gradient(ro["obs"])
    critic = q_fn(nets, ac.critic, scaler)
    loss_fn = lambda p: -jnp.mean(critic(states, policy_fn(nets, p, scaler)(states)))
    loss, grads = jax.value_and_grad(loss_fn)(ac.actor)
    metrics = {
        "train/imagined_return": jnp.mean(critic(ro["obs"][0], ro["actions"][0])),
        "train/imagined_reward": jnp.mean(ro["rewards"]),
        "train/imagined_alive": jnp.mean(ro["alive"][-1]),
    }
    return loss, grads, metrics, states_only(ro)


def states_only(rollout: dict) -> dict:
    """The rollout's arrays the critic step reads, as constants."""
    keys = ("obs", "actions", "rewards", "dones", "alive")
    return jax.lax.stop_gradient({k: rollout[k] for k in keys})


def critic_step(
    nets: Nets,
    hyper: LEQHyper,
    world_step: WorldStep,
    ac: ActorCritic,
    scaler: tuple,
    start_obs: jax.Array,
    data: dict,
    key: jax.Array,
    rollout: dict | None = None,
) -> tuple[Any, Any, Any, dict]:
    """One critic step (§3.4 code form) with the actor in `ac` (the pre-update actor).

    L_Q = (1 - beta) L_env + beta L_model + beta R_model + (1 - beta) R_env.
    `rollout`: the imagined rollout to fit (the actor step's, for `shared_rollout`); None
    imagines one from `start_obs` with `key`.
    """
    actor_fn = policy_fn(nets, ac.actor, scaler)
    q = functools.partial(nets.critic.apply, in_mean=scaler[0], in_std=scaler[1])
    horizon, batch = hyper.horizon, start_obs.shape[0]
    if rollout is None:
        rollout = imagination.imagine(
            actor_fn, world_step, start_obs, key, horizon, unroll=hyper.unroll
        )
    ro = states_only(rollout)
    weights = losses.imagined_loss_weights(ro["alive"], hyper.gamma)
    # One critic call per parameter set: rows the loss differentiates (imagined (s_t, a_t), t < H,
    # then the dataset pairs) and rows only evaluated (s_H, and the dataset's s').
    flat = lambda x: x.reshape(-1, x.shape[-1])
    obs_fit = jnp.concatenate([flat(ro["obs"][:-1]), data["observations"]])
    act_fit = jnp.concatenate([flat(ro["actions"][:-1]), data["actions"]])
    obs_eval = jnp.concatenate([ro["obs"][-1], data["next_observations"]])
    act_eval = jnp.concatenate([ro["actions"][-1], actor_fn(data["next_observations"])])
    q_last, next_q = jnp.split(q(ac.critic, obs_eval, act_eval), [batch])
    y_env = losses.env_targets(data["rewards"], data["masks"], next_q, hyper.gamma)
    split = lambda v: (v[: horizon * batch].reshape(horizon, batch), v[horizon * batch :])
    ema_model, ema_env = split(q(ac.ema, obs_fit, act_fit))
    tau = losses.effective_tau(hyper.tau, hyper.expectile)

    def loss_fn(params):
        q_model, q_env = split(q(params, obs_fit, act_fit))
        q_all = jnp.concatenate([jax.lax.stop_gradient(q_model), q_last[None]])
        targets = returns.returns_for_kind(
            hyper.critic_target, ro["rewards"], q_all, ro["alive"], ro["dones"], hyper.gamma,
            hyper.lam,
        )  # fmt: skip
        l_model = losses.model_critic_loss(targets, q_model, weights, tau)
        l_env = losses.env_critic_loss(y_env, q_env)
        r_model = losses.ema_regulariser(ema_model, q_model, weights)
        r_env = losses.ema_regulariser(ema_env, q_env)
        total = losses.critic_loss(l_env, l_model, r_env, r_model, hyper.beta, hyper.ema_weight)
        gap = jnp.sum(weights * (q_model - targets)) / jnp.maximum(jnp.sum(weights), 1e-6)
        return total, {
            "train/critic_loss": total,
            "train/critic_model_loss": l_model,
            "train/critic_env_loss": l_env,
            "train/ema_reg": r_model + r_env,
            "train/q_minus_lambda_return": gap,
            "train/q_data": jnp.mean(q_env),
        }

    critic, critic_opt, (_, metrics), norm = apply_gradients(
        nets.critic_tx, ac.critic, ac.critic_opt, loss_fn, has_aux=True
    )
    ema = optax.incremental_update(critic, ac.ema, hyper.ema_rate)
    return critic, ema, critic_opt, {**metrics, "train/critic_grad_norm": norm}


def leq_update(
    nets: Nets,
    hyper: LEQHyper,
    world_step: WorldStep,
    ac: ActorCritic,
    scaler: tuple,
    model_obs: jax.Array,
    data: dict,
    keys: tuple[jax.Array, jax.Array] | jax.Array,
    variant: str = "production",
) -> tuple[ActorCritic, dict]:
    """Actor step, then critic step with the pre-update actor, then EMA. `keys` = (actor's,
    critic's) imagination keys, e.g. `jax.random.split(key)`; with `shared_rollout` the critic
    reuses the actor's rollout and its key goes unused."""
    k_actor, k_critic = keys
    common = (nets, hyper, world_step, ac, scaler, model_obs)
    actor, actor_opt, actor_metrics, rollout = actor_step(*common, k_actor, variant)
    shared = rollout if hyper.shared_rollout else None
    critic, ema, critic_opt, critic_metrics = critic_step(*common, data, k_critic, shared)
    return ActorCritic(actor, critic, ema, actor_opt, critic_opt), {
        **actor_metrics,
        **critic_metrics,
    }


def bc_step(nets: Nets, tx, actor, opt, scaler: tuple, data: dict) -> tuple[Any, Any, dict]:
    """Pre-training (§3.7): L = mean_b || tanh(mu(s)) - a ||^2 (the BC agent's loss)."""
    loss_fn = lambda p: bc_loss(policy_fn(nets, p, scaler)(data["observations"]), data["actions"])
    actor, opt, loss, norm = apply_gradients(tx, actor, opt, loss_fn)
    return actor, opt, {"pretrain/bc_loss": loss, "pretrain/bc_grad_norm": norm}


def fqe_step(
    nets: Nets, tx, hyper: LEQHyper, actor, critic, ema, opt, scaler: tuple, data: dict
) -> tuple[Any, Any, Any, dict]:
    """Pre-training (§3.7), FQE of the BC policy with the EMA regulariser on (s, a):

    y = r + gamma mask Q_phi(s', pi_BC(s')) (constant);
    L = mean (Q_phi(s, a) - y)^2 + w mean (Q_phi(s, a) - Qbar(s, a))^2;  Qbar <- EMA of phi
    (w = omega_EMA, 1 in the official code).
    """
    q = functools.partial(nets.critic.apply, in_mean=scaler[0], in_std=scaler[1])
    next_act = policy_fn(nets, actor, scaler)(data["next_observations"])
    next_q = q(critic, data["next_observations"], next_act)
    y = jax.lax.stop_gradient(data["rewards"] + hyper.gamma * data["masks"] * next_q)
    q_ema = q(ema, data["observations"], data["actions"])

    def loss_fn(params):
        pred = q(params, data["observations"], data["actions"])
        reg = losses.ema_regulariser(q_ema, pred)
        return jnp.mean(jnp.square(pred - y)) + hyper.ema_weight * reg

    critic, opt, loss, norm = apply_gradients(tx, critic, opt, loss_fn)
    ema = optax.incremental_update(critic, ema, hyper.ema_rate)
    return critic, ema, opt, {"pretrain/fqe_loss": loss, "pretrain/fqe_grad_norm": norm}


def expansion_states(
    nets: Nets,
    actor: Any,
    scaler: tuple,
    world_step: WorldStep,
    start_obs: jax.Array,
    key: jax.Array,
    length: int,
) -> jax.Array:
    """States of `length`-step rollouts of the stochastic actor tanh(mu + sigma eps) from
    `start_obs` (§3.5): [length * B, obs], step-0 states included, no stop at terminals."""

    def step(obs, step_key):
        k_act, k_model = jax.random.split(step_key)
        mu, log_std = nets.actor.apply(actor, obs, *scaler)
        action = networks.stochastic_action(mu, log_std, k_act)
        next_obs, _, _ = world_step(obs, action, k_model)
        return next_obs, obs

    _, states = jax.lax.scan(step, start_obs, jax.random.split(key, length))
    return states.reshape(-1, start_obs.shape[-1])
