"""Image encoders (haiku) and DrQ's random-shift augmentation.

The encoder is DrQ's (Kostrikov et al. 2020; Yarats et al. 2021): frames scaled to [-0.5, 0.5],
`layers` 3x3 convolutions with `depth` channels (the first with stride 2, the rest stride 1,
VALID padding, ReLU), flattened, then Linear(feature_dim) -> LayerNorm -> tanh. A pixel policy
reads `encoder(image)` concatenated with the observation's other (flat) fields
(agent/bc/networks.py).

Frame stacks: an encoder may read the last k frames of an image field as one image [H, W, k C],
the frames side by side on channels, oldest first (V-D4RL's DrQ+BC stacks 3). Training batches
gather them from the replay (agent/replay.py, `sample_stacked`); a policy keeps them as its carry
between environment steps (`start_frame_stack`, `push_frame`). The stack is one image, so
`random_shift` moves all its frames by the same offset.
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp

from agent.protocol import Field, Spec


def image_fields(spec: Spec) -> list[str]:
    """Names of the spec's image fields (uint8 [H, W, C]), sorted."""
    return sorted(
        name for name, f in spec.obs.items() if f.dtype == jnp.uint8 and len(f.shape) == 3
    )


def stacked_spec(spec: Spec, frames: int) -> Spec:
    """`spec` with each image field [H, W, C] seen as a stack of `frames` frames [H, W, frames C]
    (the other fields unchanged)."""
    images = set(image_fields(spec))
    fields = {
        name: Field((*f.shape[:-1], f.shape[-1] * frames), f.dtype) if name in images else f
        for name, f in spec.obs.items()
    }
    return Spec(fields, spec.act_dim, spec.max_episode_steps)


def start_frame_stack(frame: jax.Array, frames: int) -> jax.Array:
    """The stack at an episode's first step: its first frame [..., H, W, C] repeated `frames`
    times on channels -> [..., H, W, frames C] (the replay repeats a trajectory's first frame
    the same way)."""
    return jnp.concatenate([frame] * frames, axis=-1)


def push_frame(stack: jax.Array, frame: jax.Array) -> jax.Array:
    """The stack [..., H, W, k C] one step later: its oldest frame dropped, `frame` [..., H, W, C]
    appended as the newest."""
    return jnp.concatenate([stack[..., frame.shape[-1] :], frame], axis=-1)


def conv_encoder(depth: int, layers: int, feature_dim: int):
    """uint8 images [..., H, W, C] -> features [..., feature_dim] (DrQ's encoder, module doc)."""

    def forward(images: jax.Array) -> jax.Array:
        lead = images.shape[:-3]
        x = images.reshape(-1, *images.shape[-3:]).astype(jnp.float32) / 255.0 - 0.5
        for i in range(layers):
            stride = 2 if i == 0 else 1
            x = hk.Conv2D(depth, 3, stride=stride, padding="VALID", name=f"conv_{i}")(x)
            x = jax.nn.relu(x)
        x = hk.Linear(feature_dim, name="project")(x.reshape(x.shape[0], -1))
        x = hk.LayerNorm(-1, create_scale=True, create_offset=True, name="project_ln")(x)
        return jnp.tanh(x).reshape(*lead, feature_dim)

    return forward


def random_shift(key: jax.Array, images: jax.Array, pad: int) -> jax.Array:
    """DrQ's augmentation: pad each image [B, H, W, C] by `pad` pixels (edge replication) and
    crop it back to H x W at an offset drawn uniformly in [0, 2 pad]^2, per image."""
    if pad <= 0:
        return images
    batch, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * pad + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

    return jax.vmap(crop)(padded, offsets)
