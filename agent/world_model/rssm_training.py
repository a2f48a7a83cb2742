"""Training the RSSM on replay windows, and its open-loop predictions.

`rssm_update` is one pure gradient step (jit it; several per call in a `lax.scan`, or a host loop
in the plain formulation, whose convolution gradients XLA on a CPU runs much slower inside a
scan: `RssmWorldModel.steps_loop_on_host`). `open_loop` filters `context`
frames and then predicts the rest from the actions alone, with a random prior head per step,
as imagination does; its image error over held-out episodes measures the model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agent import replay as replay_lib
from agent.world_model.rssm import RssmWorldModel
from agent.world_model.rssm_config import RssmConfig


class RssmTrainState(NamedTuple):
    params: Any
    opt_state: Any


def rssm_optimizer(cfg: RssmConfig) -> optax.GradientTransformation:
    """Adam at `lr` after clipping the global gradient norm at `grad_clip` (DreamerV2's)."""
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adam(cfg.lr, eps=1e-8))


def init_rssm_training(world: RssmWorldModel, key: jax.Array) -> RssmTrainState:
    params = world.init(key)
    return RssmTrainState(params, rssm_optimizer(world.cfg).init(params))


def rssm_update(
    world: RssmWorldModel, state: RssmTrainState, window: dict, key: jax.Array
) -> tuple[RssmTrainState, dict]:
    """One step of the world-model loss (`RssmWorldModel.loss`) on a window batch [B, L, ...]."""
    (_, metrics), grads = jax.value_and_grad(world.loss, has_aux=True)(state.params, window, key)
    updates, opt_state = rssm_optimizer(world.cfg).update(grads, state.opt_state, state.params)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return RssmTrainState(optax.apply_updates(state.params, updates), opt_state), metrics


def train_on_windows(
    world: RssmWorldModel,
    state: RssmTrainState,
    replay: Any,
    key: jax.Array,
    batch: int,
    length: int,
    rows: tuple[int, int] | None,
) -> tuple[RssmTrainState, dict]:
    """`rssm_update` on `batch` windows of `length` transitions drawn from `replay` inside
    `rows`; metrics named model/<name>."""
    sample_key, loss_key = jax.random.split(key)
    window = replay_lib.sample_windows(replay, sample_key, batch, length, rows=rows)
    state, metrics = rssm_update(world, state, window, loss_key)
    return state, {f"model/{k}": v for k, v in metrics.items()}


def open_loop(
    world: RssmWorldModel,
    params: Any,
    images: jax.Array,
    actions: jax.Array,
    context: int,
    key: jax.Array,
) -> jax.Array:
    """Frames [B, T+1, ...] and actions [B, T, A] -> predicted frames [B, T+1 - context, ...]
    in [0, 1]: the posterior filters o_0 .. o_{context-1}, then the prior (one random head per
    step) rolls on under a_{context-1} .. a_{T-1} without seeing another frame."""
    filter_key, roll_key = jax.random.split(key)
    latents, _, _ = world.observe_sequence(
        params, images[:, :context], actions[:, : context - 1], filter_key
    )
    last = jax.tree.map(lambda x: x[:, -1], latents)
    future = jnp.swapaxes(actions[:, context - 1 :], 0, 1)
    keys = jax.random.split(roll_key, future.shape[0])

    def step(latent, xs):
        action, k = xs
        latent, _, _ = world.imagine_step(params, latent, action, k)
        return latent, latent

    _, rolled = jax.lax.scan(step, last, (future, keys))
    rolled = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), rolled)
    return world.decode(params, rolled)


def open_loop_error(predicted: jax.Array, images: jax.Array, context: int) -> jax.Array:
    """Mean squared pixel error per predicted step [T+1 - context], frames scaled to [0, 1]."""
    target = images[:, context:].astype(jnp.float32) / 255.0
    return jnp.mean(jnp.square(predicted - target), axis=(0, 2, 3, 4))
