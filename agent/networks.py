"""Network builders shared by the agents (haiku), and tree helpers for their parameters.

Parameter names are part of checkpoints and fingerprints: an MLP's layers are `dense_<i>`,
`ln_<i>` and `out`; the members of an ensemble live under `<prefix><k>/...` (critics `q<k>`).

    mlp                    x -> Dense [-> LayerNorm] -> ReLU ... -> Dense
    ensemble               K independent heads on the same input, stacked as [B, K]
    critics                Q_k(s, a) = MLP_k([s, a]), k = 1..K              -> [B, K]
    deterministic_actor    a = tanh(MLP(s))                                 -> [B, A]
    deterministic_policy   a = tanh(MLP((s - mean) / std))                  -> [B, A]
    tanh_gaussian_actor    (mu, log sigma) with log sigma squashed into [-5, 2]; a = tanh(u),
                           u ~ N(mu, sigma^2) (agent/losses.py `sample_tanh_gaussian`)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from agent.observations import normalize


def mlp(hidden: Sequence[int], out: int, layer_norm: bool = False):
    """Dense -> [LayerNorm] -> ReLU for each hidden size, then a linear output layer."""

    def forward(x: jax.Array) -> jax.Array:
        for i, width in enumerate(hidden):
            x = hk.Linear(width, name=f"dense_{i}")(x)
            if layer_norm:
                x = hk.LayerNorm(-1, create_scale=True, create_offset=True, name=f"ln_{i}")(x)
            x = jax.nn.relu(x)
        return hk.Linear(out, name="out")(x)

    return forward


def ensemble(count: int, prefix: str, head: Callable[..., jax.Array], *inputs) -> jax.Array:
    """[head_0(*inputs), ..., head_{K-1}(*inputs)] concatenated on the last axis, head k built
    inside the name scope `<prefix><k>` (its own parameters): K outputs [B, 1] -> [B, K]."""
    outputs = []
    for k in range(count):
        with hk.experimental.name_scope(f"{prefix}{k}"):
            outputs.append(head(*inputs))
    return jnp.concatenate(outputs, axis=-1)


def critics(hidden: Sequence[int], num_critics: int = 2) -> hk.Transformed:
    """(obs [B, d], action [B, A]) -> Q [B, num_critics], each critic its own MLP on [s, a]."""

    def forward(obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return ensemble(num_critics, "q", mlp(hidden, 1), x)

    return hk.without_apply_rng(hk.transform(forward))


def deterministic_actor(
    hidden: Sequence[int], act_dim: int, layer_norm: bool = False
) -> hk.Transformed:
    """obs [B, d] -> a = tanh(MLP(obs)) in [-1, 1]^A (LayerNorm in the hidden layers on
    request)."""

    def forward(obs: jax.Array) -> jax.Array:
        return jnp.tanh(mlp(hidden, act_dim, layer_norm)(obs))

    return hk.without_apply_rng(hk.transform(forward))


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def tanh_gaussian_actor(hidden: Sequence[int], act_dim: int) -> hk.Transformed:
    """obs [B, d] -> (mean [B, A], log_std [B, A]) of the pre-tanh Gaussian, with
    log_std = -5 + 3.5 (tanh(raw) + 1) in [-5, 2] (SAC)."""

    def forward(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = mlp(hidden, 2 * act_dim)(obs)
        mean, raw = jnp.split(out, 2, axis=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
        return mean, log_std

    return hk.without_apply_rng(hk.transform(forward))


def deterministic_policy(hidden: Sequence[int], act_dim: int) -> hk.Transformed:
    """a = tanh(MLP((s - mean) / std)); the normaliser is passed in, not learned."""

    def forward(obs: jax.Array, obs_mean: jax.Array, obs_std: jax.Array) -> jax.Array:
        x = normalize(obs, obs_mean, obs_std)
        return jnp.tanh(mlp(hidden, act_dim)(x))

    return hk.without_apply_rng(hk.transform(forward))


def polyak(online, target, rate: float | jax.Array):
    """target <- rate * online + (1 - rate) * target, leaf by leaf (a soft target update)."""
    return jax.tree.map(lambda o, t: rate * o + (1.0 - rate) * t, online, target)


def even_chunk(rows: int, chunk: int) -> int:
    """The chunk size for `rows` rows in chunks of at most `chunk`: the largest divisor of `rows`
    that needs at most twice the fewest chunks, else the even split (under one padded row per
    chunk). E.g. 100,000 rows at 16,384: 8 chunks of 12,500 (not 7 of 16,384, 14 % padding)."""
    chunk = max(1, min(chunk, rows))
    fewest = -(-rows // chunk)
    for count in range(fewest, 2 * fewest + 1):
        if rows % count == 0:
            return rows // count
    return -(-rows // fewest)


def batched_apply(fn, inputs, chunk: int):
    """fn(index, rows) over `inputs` (an array or a pytree of arrays [N, ...]) in chunks of
    `even_chunk(N, chunk)` rows with lax.map (bounded memory); `index` is the chunk's number,
    rows the chunk's slice of every leaf (the last zero-padded if the chunks do not divide N)."""
    n = jax.tree.leaves(inputs)[0].shape[0]
    chunk = even_chunk(n, chunk)
    count = -(-n // chunk)

    def split(x: jax.Array) -> jax.Array:
        padded = jnp.concatenate([x, jnp.zeros((count * chunk - n, *x.shape[1:]), x.dtype)], 0)
        return padded.reshape(count, chunk, *x.shape[1:])

    out = jax.lax.map(lambda c: fn(*c), (jnp.arange(count), jax.tree.map(split, inputs)))
    return jax.tree.map(lambda y: y.reshape(count * chunk, *y.shape[2:])[:n], out)
