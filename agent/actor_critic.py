"""Update steps shared by the deterministic actor-critic agents (TD3, TD3+BC, GEM).

Their states are NamedTuples with the fields actor_params, critic_params, target_actor_params,
target_critic_params, actor_opt_state and critic_opt_state.

    TD3 critic step   L_Q = sum_k mean_b (Q_k(s, a) - y)^2,  y = r + gamma m min_k Q'_k(s', a~'),
                      a~' = clip(pi'(s') + clip(N(0, sigma^2), -c, c), -1, 1)
    actor step        theta <- theta + tx(grad L_pi(theta))
    soft targets      theta' <- rate theta + (1 - rate) theta'   (actor and critics)
    delayed update    the actor step runs on every `period`-th step only
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
) -> tuple[Any, Any, jax.Array, jax.Array, jax.Array]:
    """One step of the twin critics on L_Q with the clipped double-Q target (module docstring),
    a~' the target actor's smoothed action.

    `c` holds gamma, target_noise and target_noise_clip; `batch` actions, rewards and masks.
    -> (critic params, optimiser state, loss, Q [B, K], global gradient norm).
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

    critic, opt_state, (loss, q), norm = apply_gradients(
        tx, state.critic_params, state.critic_opt_state, loss_fn, True
    )
    return critic, opt_state, loss, q, norm


def actor_step(
    tx: optax.GradientTransformation, state: Any, loss_fn: Callable, has_aux: bool = False
) -> tuple[Any, Any]:
    """One optimiser step of the actor on loss_fn(actor params) -> (state, loss or (loss, aux))."""
    actor, opt_state, value, _ = apply_gradients(
        tx, state.actor_params, state.actor_opt_state, loss_fn, has_aux
    )
    return state._replace(actor_params=actor, actor_opt_state=opt_state), value


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
