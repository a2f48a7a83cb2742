"""TD3's critic step, shared by TD3 (online) and TD3+BC (offline); agent/td3/losses.py has the
equations it combines."""

from __future__ import annotations

from typing import Any

import haiku as hk
import jax
import optax

from agent.programs import apply_gradients
from agent.td3 import losses


def critic_update(
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
    """One step of the twin critics on L_Q = sum_k mean (Q_k(s, a) - y)^2 with the clipped
    double-Q target y = r + gamma m min_k Q'_k(s', a~'), a~' the target actor's smoothed action.

    `c` holds gamma, target_noise and target_noise_clip; `state` the critic, target critic,
    target actor and critic optimiser state; `batch` actions, rewards and masks.
    -> (critic params, optimiser state, loss, Q [B, K], global gradient norm).
    """
    next_action = losses.smoothed_target_actions(
        actor_net.apply(state.target_actor_params, next_obs),
        noise_key,
        c.target_noise,
        c.target_noise_clip,
    )
    next_q = critic_net.apply(state.target_critic_params, next_obs, next_action)
    targets = losses.clipped_double_q_targets(batch["rewards"], batch["masks"], next_q, c.gamma)

    def loss_fn(params):
        q = critic_net.apply(params, obs, batch["actions"])
        return losses.critic_loss(q, targets), q

    critic, opt_state, (loss, q), norm = apply_gradients(
        tx, state.critic_params, state.critic_opt_state, loss_fn, True
    )
    return critic, opt_state, loss, q, norm
