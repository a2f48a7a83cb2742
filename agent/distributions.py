"""Distributions as pure functions on arrays: those of a DreamerV3-style RSSM and the
(tanh-)Gaussian policies of SAC, VEM and LEQ from pixels.

* symlog(x) = sign(x) ln(1 + |x|), symexp its inverse;
* two-hot targets over bins spaced uniformly in symlog space (rewards, critic values);
* categorical latents with "unimix": probs = (1 - u) softmax(logits) + u / C;
* the KL between two factorised categoricals, summed over the S variables;
* straight-through one-hot samples: forward a one-hot draw, backward the probabilities' gradient;
* diagonal Gaussian log-densities and the tanh change of variables.

Logits carry shape [..., S, C] (S variables of C classes each).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOG_2 = 0.6931471805599453
UNIMIX = 0.01
TWOHOT_BINS = 255
TWOHOT_LIMIT = 20.0


def symlog(x: jax.Array) -> jax.Array:
    """symlog(x) = sign(x) ln(1 + |x|)."""
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: jax.Array) -> jax.Array:
    """symexp(x) = sign(x) (exp(|x|) - 1), the inverse of symlog."""
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def twohot_bins(count: int = TWOHOT_BINS, limit: float = TWOHOT_LIMIT) -> jax.Array:
    """`count` bin centres spaced uniformly on [-limit, limit] in symlog space."""
    return jnp.linspace(-limit, limit, count)


def twohot(x: jax.Array, bins: jax.Array) -> jax.Array:
    """Two-hot encoding of symlog(x) over `bins`: [...] -> [..., len(bins)].

    With b_k <= y = symlog(x) < b_{k+1}: weight (b_{k+1} - y) / (b_{k+1} - b_k) on bin k and the
    rest on bin k + 1, so sum_j w_j b_j = y; values outside the bins go wholly to the end bin.
    """
    y = jnp.clip(symlog(x), bins[0], bins[-1])
    upper = jnp.clip(jnp.searchsorted(bins, y, side="right"), 1, len(bins) - 1)
    lower = upper - 1
    width = bins[upper] - bins[lower]
    w_upper = (y - bins[lower]) / width
    return (
        jax.nn.one_hot(lower, len(bins)) * (1.0 - w_upper)[..., None]
        + jax.nn.one_hot(upper, len(bins)) * w_upper[..., None]
    )


def twohot_mean(logits: jax.Array, bins: jax.Array) -> jax.Array:
    """The value a two-hot head predicts: symexp(sum_j softmax(logits)_j b_j)."""
    return symexp(jnp.sum(jax.nn.softmax(logits, axis=-1) * bins, axis=-1))


def twohot_log_prob(logits: jax.Array, x: jax.Array, bins: jax.Array) -> jax.Array:
    """log p(x) of a two-hot head: sum_j twohot(x)_j log softmax(logits)_j."""
    return jnp.sum(twohot(x, bins) * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def unimix_logits(logits: jax.Array, unimix: float = UNIMIX) -> jax.Array:
    """log of (1 - u) softmax(logits) + u / C over the last axis (C classes)."""
    probs = jax.nn.softmax(logits, axis=-1)
    if unimix > 0:
        probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
    return jnp.log(probs)


def categorical_kl(logits_p: jax.Array, logits_q: jax.Array) -> jax.Array:
    """KL[p || q] of factorised categoricals [..., S, C], summed over the S variables:
    sum_s sum_c p_sc (log p_sc - log q_sc)."""
    log_p = jax.nn.log_softmax(logits_p, axis=-1)
    log_q = jax.nn.log_softmax(logits_q, axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=(-2, -1))


def straight_through_sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    """A one-hot draw from each categorical [..., S, C] whose gradient is that of the
    probabilities: one_hot(sample) + p - sg(p)."""
    probs = jax.nn.softmax(logits, axis=-1)
    sample = jax.nn.one_hot(jax.random.categorical(key, logits), logits.shape[-1])
    return sample + probs - jax.lax.stop_gradient(probs)


def categorical_mode(logits: jax.Array) -> jax.Array:
    """One-hot argmax of each categorical [..., S, C]."""
    return jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1])


def bernoulli_log_prob(logit: jax.Array, target: jax.Array) -> jax.Array:
    """log p(target) of a Bernoulli head with soft targets in [0, 1]:
    t log sigmoid(l) + (1 - t) log sigmoid(-l)."""
    return target * jax.nn.log_sigmoid(logit) + (1.0 - target) * jax.nn.log_sigmoid(-logit)


def gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(u; mean, diag(exp(log_std)^2)) summed over the last axis:
    sum_i [ -(u_i - mean_i)^2 / (2 sigma_i^2) - log sigma_i - log(2 pi) / 2 ]."""
    z = (u - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def tanh_log_det(u: jax.Array) -> jax.Array:
    """sum_i log(1 - tanh(u_i)^2), computed stably as 2 (log 2 - u - softplus(-2u))."""
    return jnp.sum(2.0 * (LOG_2 - u - jax.nn.softplus(-2.0 * u)), axis=-1)
