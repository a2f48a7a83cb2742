"""H-step imagined rollouts of a deterministic policy through a learned model.

    a_t     = pi(s_t) + delta_t                                  t = 0..H
    s_{t+1}, r_t, c_t = world_step(s_t, clip(a_t, -1, 1), key_t)   t = 0..H-1 (fresh key_t)
    d_t     = 1 - c_t      (c_t: the world model's continue flag or probability)
    m_0 = 1, m_{t+1} = m_t c_t

s_t is the world model's latent (the observation vector for the state ensemble).

Rollouts never stop at a termination: states after it are still expanded and only masked later
(the returns and the critic's loss weights use m_t), as in LEQ. `delta` is an additive action
perturbation (zero by default); the action-gradient code differentiates with respect to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# obs [B, obs] -> action [B, act], or -> (action, extra) with `extra` any pytree of [B, ...] arrays
ActorFn = Callable[[jax.Array], jax.Array | tuple[jax.Array, Any]]
# (latent [B, ...], action [B, act], key) -> (next latent, reward [B], continue [B])
WorldStep = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]
# state_link(next_obs [B, obs], next_alive [B], t) -> next_obs; must not change forward values.
StateLink = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def clip_action(action: jax.Array) -> jax.Array:
    """clip(a, -1, 1) whose derivative is 1 on the closed interval [-1, 1].

    jnp.clip's derivative is 0 exactly at the bounds, where a saturated tanh lands in float32;
    that would silently drop the model path of the action gradient for such samples.
    """
    one = jnp.ones_like(action)
    return jnp.where(action > 1.0, one, jnp.where(action < -1.0, -one, action))


def _act(actor_fn: ActorFn, obs: jax.Array) -> tuple[jax.Array, Any]:
    out = actor_fn(obs)
    return out if isinstance(out, tuple) else (out, None)


def imagine(
    actor_fn: ActorFn,
    world_step: WorldStep,
    start_obs: jax.Array,
    key: jax.Array,
    horizon: int,
    action_noise: jax.Array | None = None,
    state_link: StateLink | None = None,
    unroll: int | bool = 1,
) -> dict[str, jax.Array]:
    """Roll `actor_fn` for `horizon` model steps from start_obs [B, obs].

    Returns obs [H+1, B, obs], actions [H+1, B, act] (a_t = pi(s_t) + delta_t, unclipped: what
    the critic sees), rewards [H, B] (training units), dones [H, B] (1 - continue, float),
    alive [H+1, B] (float), and actor_extra [H+1, B, ...] when actor_fn returns (action, extra).
    action_noise: delta [H+1, B, act], zero if None. state_link: optional hook applied to every
    s_{t+1} before it is used (identity forward; action_gradients.py rescales cotangents there).
    unroll: passed to lax.scan (True unrolls fully; XLA's cost analysis counts a loop body once).
    """
    dtype = start_obs.dtype
    first_action, first_extra = _act(actor_fn, start_obs)
    if action_noise is None:
        action_noise = jnp.zeros((horizon + 1, *first_action.shape), first_action.dtype)
    keys = jax.random.split(key, horizon)

    def step(carry, xs):
        obs, action, alive = carry
        step_key, next_delta, t = xs
        model_action = clip_action(action)
        next_obs, reward, cont = world_step(obs, model_action, step_key)
        # The masks are constants of the returns (action_gradients.py relies on it).
        cont = jax.lax.stop_gradient(cont)
        done = 1.0 - cont.astype(dtype)
        next_alive = alive * cont.astype(dtype)
        if state_link is not None:
            next_obs = state_link(next_obs, next_alive, t)
        next_action, extra = _act(actor_fn, next_obs)
        next_action = next_action + next_delta
        outputs = (next_obs, next_action, reward, done, next_alive, extra)
        return (next_obs, next_action, next_alive), outputs

    alive0 = jnp.ones(start_obs.shape[:-1], dtype)
    init = (start_obs, first_action + action_noise[0], alive0)
    xs = (keys, action_noise[1:], jnp.arange(horizon))
    _, (obs, actions, rewards, dones, alive, extra) = jax.lax.scan(step, init, xs, unroll=unroll)
    rollout = {
        "obs": jnp.concatenate([start_obs[None], obs], axis=0),
        "actions": jnp.concatenate([init[1][None], actions], axis=0),
        "rewards": rewards,
        "dones": dones,
        "alive": jnp.concatenate([alive0[None], alive], axis=0),
    }
    if first_extra is not None:
        stack = lambda first, rest: jnp.concatenate([first[None], rest], axis=0)
        rollout["actor_extra"] = jax.tree_util.tree_map(stack, first_extra, extra)
    return rollout
