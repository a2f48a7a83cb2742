"""Actor, critic and value of LEQ from pixels, on RSSM features.

Every hidden layer is Linear -> RMSNorm -> SiLU, as in the world model.
    actor   feature -> (mean, std) of a Gaussian over u, a = tanh(u); std in [0.1, 1]
    critic  [feature, action] -> two-hot logits over symlog bins (Q)
    value   feature -> two-hot logits (V, the actor's baseline)
Output layers start as DreamerV3's and LEQ_DV3's (`outscale`): the critic's and value's at zero,
so their first predictions are 0; the actor's at 1/100 of the default weight variance, so the
untrained actor is near tanh(N(0, std(0)^2)) for every feature instead of an arbitrary policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp

MIN_STD, MAX_STD = 0.1, 1.0
ACTOR_OUT_SCALE = 0.01  # DreamerV3's actor `outscale`: a weight variance of 0.01 / fan_in


def _trunk(x: jax.Array, hidden: Sequence[int]) -> jax.Array:
    for i, size in enumerate(hidden):
        x = hk.Linear(size, name=f"hidden{i}")(x)
        x = jax.nn.silu(hk.RMSNorm(-1, create_scale=True, name=f"norm{i}")(x))
    return x


def actor_net(hidden: Sequence[int], act_dim: int) -> hk.Transformed:
    """feature [.., F] -> (mean [.., A], std [.., A]): std = 0.9 sigmoid(x + 2) + 0.1
    (DreamerV3's bounded std)."""

    def forward(feat):
        small = hk.initializers.VarianceScaling(ACTOR_OUT_SCALE, "fan_in", "truncated_normal")
        out = hk.Linear(2 * act_dim, w_init=small, name="out")(_trunk(feat, hidden))
        mean, raw = jnp.split(out, 2, axis=-1)
        std = (MAX_STD - MIN_STD) * jax.nn.sigmoid(raw + 2.0) + MIN_STD
        return mean, std

    return hk.without_apply_rng(hk.transform(forward))


def critic_net(hidden: Sequence[int], bins: int) -> hk.Transformed:
    """(feature [.., F], action [.., A]) -> logits [.., bins]."""

    def forward(feat, action):
        x = _trunk(jnp.concatenate([feat, action], axis=-1), hidden)
        return hk.Linear(bins, w_init=jnp.zeros, name="out")(x)

    return hk.without_apply_rng(hk.transform(forward))


def value_net(hidden: Sequence[int], bins: int) -> hk.Transformed:
    """feature [.., F] -> logits [.., bins]."""

    def forward(feat):
        return hk.Linear(bins, w_init=jnp.zeros, name="out")(_trunk(feat, hidden))

    return hk.without_apply_rng(hk.transform(forward))
