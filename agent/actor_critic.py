"""Pieces shared by the actor-critic agents (SAC, TD3, TD3+BC, GEM, IQL): their first state,
the update steps of the deterministic ones (TD3, TD3+BC, GEM), and the base of the online ones
(SAC, TD3, GEM: `OnlineActorCritic`).

Their states are NamedTuples with the fields actor_params, critic_params, target_critic_params,
actor_opt_state, critic_opt_state and (deterministic actors) target_actor_params.

    TD3 critic step   L_Q = sum_k mean_b (Q_k(s, a) - y)^2,  y = r + gamma m min_k Q'_k(s', a~'),
                      a~' = clip(pi'(s') + clip(N(0, sigma^2), -c, c), -1, 1)
    network step      theta <- theta + tx(grad L(theta))   (actor, critics, value)
    soft targets      theta' <- rate theta + (1 - rate) theta'   (actor and critics)
    delayed update    the actor step runs on every `period`-th step only
    exploration       a = clip(pi(s) + N(0, sigma^2), -1, 1)   (pi(s) in evaluation)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from agent.losses import clipped_double_q_targets, smoothed_target_actions, twin_critic_loss
from agent.networks import polyak
from agent.optimizers import apply_gradients
from agent.protocol import EVAL, WARMUP, Agent, Context, Spec

LEARN = "learn"  # the online actor-critics' phase once learning has started

# The fields of every deterministic actor-critic state (TD3, TD3+BC, GEM), in their order; each
# state adds its own: NamedTuple("TD3State", [*DETERMINISTIC_FIELDS, ("step", jax.Array)]).
DETERMINISTIC_FIELDS = [
    ("actor_params", dict),
    ("critic_params", dict),
    ("target_actor_params", dict),
    ("target_critic_params", dict),
    ("actor_opt_state", optax.OptState),
    ("critic_opt_state", optax.OptState),
]


def initial_fields(
    actor_net: hk.Transformed,
    critic_net: hk.Transformed,
    actor_opt: optax.GradientTransformation,
    critic_opt: optax.GradientTransformation,
    actor_key: jax.Array,
    critic_key: jax.Array,
    spec: Spec,
    target_actor: bool = True,
) -> dict:
    """The actor-critic fields of a fresh state: the actor pi(s) and critics Q(s, a) initialised
    on zero inputs (flat observations), target copies of the critics (and, with `target_actor`,
    of the actor), fresh optimiser states."""
    obs = jnp.zeros((1, spec.flat_obs_dim))
    actor = actor_net.init(actor_key, obs)
    critic = critic_net.init(critic_key, obs, jnp.zeros((1, spec.act_dim)))
    fields = {
        "actor_params": actor,
        "critic_params": critic,
        "target_critic_params": jax.tree.map(jnp.copy, critic),
        "actor_opt_state": actor_opt.init(actor),
        "critic_opt_state": critic_opt.init(critic),
    }
    if target_actor:
        fields["target_actor_params"] = jax.tree.map(jnp.copy, actor)
    return fields


def td3_critic_step(
    actor_net: hk.Transformed,
    critic_net: hk.Transformed,
    tx: optax.GradientTransformation,
    c: Any,
    state: Any,
    obs: jax.Array,
    batch: dict,
    next_obs: jax.Array,
    noise_key: jax.Array,
) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
    """One step of the twin critics on L_Q with the clipped double-Q target (module docstring),
    a~' the target actor's smoothed action.

    `c` holds gamma, target_noise and target_noise_clip; `batch` actions, rewards and masks.
    -> (state with the new critics, loss, Q [B, K], global gradient norm).
    """
    next_action = smoothed_target_actions(
        actor_net.apply(state.target_actor_params, next_obs),
        noise_key,
        c.target_noise,
        c.target_noise_clip,
    )
    next_q = critic_net.apply(state.target_critic_params, next_obs, next_action)
    targets = clipped_double_q_targets(batch["rewards"], batch["masks"], next_q, c.gamma)

    def loss_fn(params):
        q = critic_net.apply(params, obs, batch["actions"])
        return twin_critic_loss(q, targets), q

    state, (loss, q), norm = update_network(state, "critic", tx, loss_fn, has_aux=True)
    return state, loss, q, norm


def update_network(
    state: Any, name: str, tx: optax.GradientTransformation, loss_fn: Callable, has_aux=False
) -> tuple[Any, Any, jax.Array]:
    """One optimiser step theta <- theta + tx(grad L(theta)) of the network `name` of `state`
    (its fields `<name>_params` and `<name>_opt_state`) on L = loss_fn(params)
    -> (state, loss or (loss, aux), global gradient norm ||grad L||_2)."""
    params, opt_state, value, norm = apply_gradients(
        tx, getattr(state, f"{name}_params"), getattr(state, f"{name}_opt_state"), loss_fn, has_aux
    )
    return state._replace(**{f"{name}_params": params, f"{name}_opt_state": opt_state}), value, norm


def soft_update_targets(state: Any, rate: float | jax.Array) -> Any:
    """theta' <- rate theta + (1 - rate) theta' for the target actor and the target critics."""
    return state._replace(
        target_actor_params=polyak(state.actor_params, state.target_actor_params, rate),
        target_critic_params=polyak(state.critic_params, state.target_critic_params, rate),
    )


def delayed(
    step: jax.Array, period: int, update: Callable[[Any], tuple[Any, Any]], state: Any
) -> tuple[Any, Any]:
    """update(state) -> (state, out) when step % period == 0; else (state, out filled with NaN),
    NaN marking the steps without the update in the chunk's means (a `lax.cond`: one branch
    runs)."""
    out_shape = jax.eval_shape(update, state)[1]
    skipped = jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype), out_shape)
    return jax.lax.cond(step % period == 0, update, lambda s: (s, skipped), state)


def exploration_action(
    actor_net: hk.Transformed, params: Any, obs: jax.Array, mode: str, key: jax.Array, noise: float
) -> jax.Array:
    """pi(s) in evaluation (mode EVAL); clip(pi(s) + N(0, noise^2), -1, 1) otherwise."""
    action = actor_net.apply(params, obs)
    if mode == EVAL:
        return action
    return jnp.clip(action + noise * jax.random.normal(key, action.shape), -1.0, 1.0)


class OnlineActorCritic(Agent):
    """Base of the online actor-critics (SAC, TD3, GEM), configured by their section `c`: the
    actor and critic networks with one Adam each (`c.actor_lr`, `c.critic_lr`); WARMUP (the
    runner acts at random, nothing trains) for `c.learning_starts` environment steps, then LEARN;
    `c.train_every` environment steps and as many updates per chunk; a replay of `c.capacity`
    rows; the actor's parameters are the policy and the snapshot."""

    online = True
    policy_fields = ("actor_params",)

    def __init__(
        self,
        cfg: Any,
        spec: Spec,
        context: Context,
        c: Any,
        actor_net: hk.Transformed,
        critic_net: hk.Transformed,
    ) -> None:
        super().__init__(cfg, spec, context)
        self.actor_net, self.critic_net = actor_net, critic_net
        self.actor_opt = optax.adam(c.actor_lr)
        self.critic_opt = optax.adam(c.critic_lr)
        self.learning_starts = c.learning_starts
        self.env_steps_per_chunk = c.train_every
        self.updates_per_chunk = c.train_every
        self.replay_capacity = c.capacity
        self.snapshot_every = c.snapshot_every

    def phase(self, step: int) -> str:
        """WARMUP (uniform random actions, no learning) before `learning_starts` env steps."""
        return WARMUP if step < self.learning_starts else LEARN

    def snapshot_params(self, state: Any) -> dict:
        return state.actor_params
