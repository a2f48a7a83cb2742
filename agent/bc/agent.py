"""Behaviour cloning: a deterministic tanh-MLP policy regressed onto dataset actions.

    L(theta) = E_{(s, a) ~ D} || tanh(f_theta(s)) - a ||^2

It is the first baseline, and LEQ's policy pre-training reuses `bc_loss`. On states it reads the
flat observation (`flat_obs`); on pixels (a spec with image fields) DrQ's convolutional encoder
reads the last `bc.frame_stack` frames of each image field stacked on channels ([H, W, 3k],
oldest first; agent/bc/networks.py, agent/encoders.py), with DrQ's random-shift augmentation of
the training batches (`bc.random_shift` pixels, 0 = off; one offset per stack). The replay stores
each frame once and gathers the stacks when it samples (`replay.sample_stacked`); the policy
keeps the stack of the episode in progress as its carry. It can draw its batches on the host
(`device_replay = False`) for datasets too large for the device.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from agent import replay as replay_lib
from agent.bc.networks import pixel_policy
from agent.encoders import (
    image_fields,
    push_frame,
    random_shift,
    stacked_spec,
    start_frame_stack,
)
from agent.networks import deterministic_policy
from agent.observations import flat_obs
from agent.optimizers import apply_gradients
from agent.protocol import Agent, Context, Spec

PHASE = "bc"


class BCState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    obs_mean: jax.Array
    obs_std: jax.Array


def bc_loss(predicted: jax.Array, target: jax.Array) -> jax.Array:
    """Mean over the batch of the squared error summed over action dimensions."""
    return jnp.mean(jnp.sum(jnp.square(predicted - target), axis=-1))


class BCAgent(Agent):
    """Deterministic-policy behaviour cloning."""

    device_replay = False
    policy_fields = ("params", "obs_mean", "obs_std")

    def __init__(self, cfg, spec: Spec, context: Context):
        super().__init__(cfg, spec, context)
        self.batch = cfg.bc.batch_size
        self.images = image_fields(spec)
        self.host_loop_chunks = bool(self.images)  # convolutions: see Agent.host_loop_chunks
        self.shift = int(cfg.bc.random_shift)
        # Frames per stack: states have none to stack; 1 is the single-frame policy.
        self.frames = int(cfg.bc.frame_stack) if self.images else 1
        if self.images:
            b = cfg.bc
            self.net = pixel_policy(
                spec, b.hidden, b.encoder_depth, b.encoder_layers, b.feature_dim, self.frames
            )
        else:
            self.net = deterministic_policy(cfg.bc.hidden, spec.act_dim)
        self.optimizer = optax.adam(cfg.bc.lr)

    def _inputs(self, obs: dict) -> jax.Array | dict:
        """The network's input: the observation dict on pixels, the flat vector on states."""
        return obs if self.images else flat_obs(obs, self.spec)

    def _augment(self, obs: dict, key: jax.Array) -> dict:
        """DrQ's random shift of every image field of a training batch."""
        keys = jax.random.split(key, len(self.images))
        shifted = {
            n: random_shift(k, obs[n], self.shift) for n, k in zip(self.images, keys, strict=True)
        }
        return {**obs, **shifted}

    def init(self, key: jax.Array, spec: Spec) -> BCState:
        init_key, _ = jax.random.split(key)
        mean, std = jnp.asarray(self.context.obs_mean), jnp.asarray(self.context.obs_std)
        seen = stacked_spec(spec, self.frames)  # the shapes the network reads
        dummy = self._inputs(jax.tree.map(jnp.asarray, seen.zeros_obs(1)))
        params = self.net.init(init_key, dummy, mean, std)
        return BCState(params, self.optimizer.init(params), mean, std)

    def phase(self, step: int) -> str:
        return PHASE

    def batch_size(self, phase: str) -> int:
        return self.batch

    def host_batch(self, phase: str, replay, rng) -> dict:
        """Uniform rows of a `HostReplay`, image fields as frame stacks (1 frame: `sample`)."""
        return replay.sample_stacked(rng, self.batch, self.frames, self.images)

    def train(self, phase, state: BCState, replay, key) -> tuple[BCState, dict]:
        """One gradient step on a uniform batch."""
        if self.images and self.shift:  # states keep their key stream (and results) unchanged
            key, shift_key = jax.random.split(key)
        # Uniform rows, image fields as frame stacks (1 frame: exactly `replay_lib.sample`).
        batch = replay_lib.sample_stacked(replay, key, self.batch, self.frames, self.images)
        obs = batch["observations"]
        if self.images and self.shift:
            obs = self._augment(obs, shift_key)
        obs = self._inputs(obs)

        def loss_fn(params):
            pred = self.net.apply(params, obs, state.obs_mean, state.obs_std)
            return bc_loss(pred, batch["actions"])

        params, opt_state, loss, norm = apply_gradients(
            self.optimizer, state.params, state.opt_state, loss_fn
        )
        metrics = {"train/loss": loss, "train/grad_norm": norm}
        return state._replace(params=params, opt_state=opt_state), metrics

    def policy(self, state: BCState, carry, obs, mode, key):
        """The deterministic policy (the same in every mode). On pixels with frame stacks the
        carry is {image field: the stack of its last frames [B, H, W, k C]}; None starts an
        episode (its first frame repeated, as the replay repeats a trajectory's first frame)."""
        if self.frames > 1:
            carry = self._push(carry, obs)
            obs = {**obs, **carry}
        x = self._inputs(obs)
        return carry, self.net.apply(state.params, x, state.obs_mean, state.obs_std)

    def _push(self, carry: dict | None, obs: dict) -> dict:
        """The stacks after observing `obs`: started from it when `carry` is None."""
        if carry is None:
            return {n: start_frame_stack(jnp.asarray(obs[n]), self.frames) for n in self.images}
        return {n: push_frame(carry[n], jnp.asarray(obs[n])) for n in self.images}
