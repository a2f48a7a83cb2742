"""BC's policy on pixels: DrQ's encoder per image field, the other fields normalised, an MLP."""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from agent.encoders import conv_encoder, image_fields
from agent.networks import mlp
from agent.observations import field_slices, normalize
from agent.protocol import Spec


def pixel_policy(
    spec: Spec,
    hidden: Sequence[int],
    depth: int,
    layers: int,
    feature_dim: int,
    frame_stack: int = 1,
) -> hk.Transformed:
    """a = tanh(MLP([encoder(image) ...; (rest - mean) / std])) for observation dicts [B, ...];
    each image field comes as a stack of its last `frame_stack` frames [B, H, W, frame_stack C]
    (agent/encoders.py), the other fields as `spec` gives them. (obs_mean, obs_std) are the
    flat-observation statistics of `spec` (single frames), of which the non-image fields'
    slices are used."""
    images = image_fields(spec)
    rest = [name for name in sorted(spec.obs) if name not in images]
    slices = field_slices(spec)  # of the single-frame spec: where the statistics lie

    def forward(obs: dict, obs_mean: jax.Array, obs_std: jax.Array) -> jax.Array:
        encoder = conv_encoder(depth, layers, feature_dim)
        # Said in words: a batch drawn without stacks (a host batch from `HostReplay.sample`
        # rather than BCAgent.host_batch) would otherwise fail on a convolution's shape.
        for name in images:
            channels = spec.obs[name].shape[-1] * frame_stack
            if obs[name].shape[-1] != channels:
                raise ValueError(
                    f"image field '{name}' has {obs[name].shape[-1]} channels; the policy reads "
                    f"stacks of {frame_stack} frames ({channels} channels)"
                )
        parts = [encoder(obs[name]) for name in images]
        for name in rest:
            x = obs[name].reshape(*obs[name].shape[:1], -1).astype(jnp.float32)
            parts.append(normalize(x, obs_mean[slices[name]], obs_std[slices[name]]))
        return jnp.tanh(mlp(hidden, spec.act_dim)(jnp.concatenate(parts, axis=-1)))

    return hk.without_apply_rng(hk.transform(forward))
