"""LEQ's state-based critic and actor, as haiku transforms.

Both take the world model's input scaler (mean, std over the concatenated [s, a], from
`WorldModel.input_scaler`) as call arguments. Deviation from LEQ: the scaler is a constant,
not a trainable parameter (LEQ stores it as actor parameters that do receive gradients; it
is a normaliser, so we keep it fixed, like the critic's in LEQ).
"""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from agent.distributions import symlog
from agent.observations import normalize

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
HIDDEN = (256, 256, 256)


def _orthogonal() -> hk.initializers.Initializer:
    # LEQ initialises every Dense (output layers included) orthogonally with gain sqrt(2).
    return hk.initializers.Orthogonal(scale=float(np.sqrt(2.0)))


def _trunk(x: jax.Array, hidden: Sequence[int], layer_norm: bool) -> jax.Array:
    """Dense -> [LayerNorm] -> ReLU per hidden layer."""
    for i, width in enumerate(hidden):
        x = hk.Linear(width, w_init=_orthogonal(), name=f"dense_{i}")(x)
        if layer_norm:
            # eps 1e-6 as flax's LayerNorm, which LEQ uses.
            x = hk.LayerNorm(-1, create_scale=True, create_offset=True, eps=1e-6, name=f"ln_{i}")(x)
        x = jax.nn.relu(x)
    return x


def make_critic(hidden: Sequence[int] = HIDDEN) -> hk.Transformed:
    """Q(s, a) = Dense(1)(MLP_LN(symlog(([s, a] - mean) / std))) -> [...].

    apply(params, obs [..., obs], action [..., act], in_mean [obs+act], in_std [obs+act]).
    """

    def forward(obs, action, in_mean, in_std):
        x = normalize(jnp.concatenate([obs, action], axis=-1), in_mean, in_std)
        x = _trunk(symlog(x), hidden, layer_norm=True)
        return hk.Linear(1, w_init=_orthogonal(), name="out")(x)[..., 0]

    return hk.without_apply_rng(hk.transform(forward))


def make_actor(act_dim: int, hidden: Sequence[int] = HIDDEN) -> hk.Transformed:
    """(mu, log_std): mu = Dense(act)(MLP(symlog((s - mean_s) / std_s))), pre-tanh.

    apply(params, obs [..., obs], in_mean, in_std) with the full [s, a] scaler (its first
    obs_dim entries are used) -> (mu [..., act], log_std [act]). The deterministic action is
    tanh(mu); log_std (init 0, clipped to [-5, 2], state independent) is only for expansion noise.
    """

    def forward(obs, in_mean, in_std):
        obs_dim = obs.shape[-1]
        x = normalize(obs, in_mean[:obs_dim], in_std[:obs_dim])
        x = _trunk(symlog(x), hidden, layer_norm=False)
        mu = hk.Linear(act_dim, w_init=_orthogonal(), name="mean")(x)
        log_std = hk.get_parameter("log_std", (act_dim,), mu.dtype, init=jnp.zeros)
        return mu, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    return hk.without_apply_rng(hk.transform(forward))


def deterministic_action(mu: jax.Array) -> jax.Array:
    """a = tanh(mu)."""
    return jnp.tanh(mu)


def stochastic_action(
    mu: jax.Array, log_std: jax.Array, key: jax.Array, temperature: float = 1.0
) -> jax.Array:
    """a = tanh(mu + temperature exp(log_std) eps), eps ~ N(0, I) (expansion policy, §3.5)."""
    eps = jax.random.normal(key, mu.shape, mu.dtype)
    return jnp.tanh(mu + temperature * jnp.exp(log_std) * eps)
