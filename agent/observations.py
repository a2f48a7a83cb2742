"""Observations as dicts of typed arrays, their flat network input, and its normalisation.

This is the one place where observations are normalised: the runner computes the statistics
once from the dataset (`observation_stats`) and hands them to the agents in the `Context`.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from agent.protocol import Field, Spec

STATE = "state"
STD_FLOOR = 1e-3


def state_spec(obs_dim: int) -> dict[str, Field]:
    """The observation fields of a state-based task: {"state": float32[obs_dim]}."""
    return {STATE: Field((obs_dim,), np.dtype(np.float32))}


def flat_obs(obs: Mapping[str, jax.Array], spec: Spec) -> jax.Array:
    """Concatenate the fields into one float32 vector per step: [..., spec.flat_obs_dim].

    uint8 fields (images) are scaled to [0, 1]; fields are taken in sorted name order. A single
    float32 field is returned as it is (no copy).
    """
    names = sorted(spec.obs)
    if names == [STATE] and obs[STATE].dtype == jnp.float32:
        return obs[STATE]
    parts = []
    for name in names:
        x = obs[name]
        lead = x.shape[: x.ndim - len(spec.obs[name].shape)]
        x = x.reshape(*lead, -1)
        x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
        parts.append(x)
    return jnp.concatenate(parts, axis=-1)


def field_slices(spec: Spec) -> dict[str, slice]:
    """Where each field lies in the flat observation (`flat_obs`'s sorted name order)."""
    out, offset = {}, 0
    for name in sorted(spec.obs):
        size = int(np.prod(spec.obs[name].shape, dtype=np.int64))
        out[name] = slice(offset, offset + size)
        offset += size
    return out


def observation_stats(obs: Mapping[str, np.ndarray] | None, spec: Spec) -> tuple:
    """Per-dimension mean and std (floored at 1e-3) of the flattened observations [N, ...].

    Image fields are not standardised (mean 0, std 1 after their [0, 1] scaling); None (no data,
    e.g. online) gives the identity normaliser.
    """
    dim = spec.flat_obs_dim
    mean, std = np.zeros(dim, np.float32), np.ones(dim, np.float32)
    if obs is None:
        return mean, std
    offset = 0
    for name in sorted(spec.obs):
        field = spec.obs[name]
        size = int(np.prod(field.shape, dtype=np.int64))
        if np.dtype(field.dtype) != np.uint8:
            x = np.asarray(obs[name]).reshape(len(obs[name]), -1)
            mean[offset : offset + size] = x.mean(0)
            std[offset : offset + size] = np.maximum(x.std(0), STD_FLOOR)
        offset += size
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """(x - mean) / std."""
    return (x - mean) / std
