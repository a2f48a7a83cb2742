"""One replay for every method: offline datasets, model-generated data and online experience.

The replay is a pytree of device arrays plus two counters, so it can live inside a jitted update
and be sampled there (no host round trip per batch). Three uses:

* offline data: filled once from an `OfflineData`, in dataset order, trajectory ends kept, so that
  memory-based planning can sweep whole trajectories (`trajectory_bounds`);
* model-generated data: a FIFO ring buffer (`add` overwrites the oldest rows);
* online experience: the same ring buffer, filled step by step.

Sampling is vectorised: one `jax.random` draw of indices and one gather per field.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from envs.offline_data import OfflineData

Batch = dict[str, jax.Array]

OFFLINE_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "masks",
    "timeouts",
    "episode_ends",
)


def row_spec(obs_dim: int, act_dim: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of one row in the offline layout (OFFLINE_FIELDS), for `empty`."""
    shapes = {"observations": (obs_dim,), "actions": (act_dim,), "next_observations": (obs_dim,)}
    return {k: (shapes.get(k, ()), np.dtype(np.float32)) for k in OFFLINE_FIELDS}


class Replay(NamedTuple):
    """Ring buffer of `capacity` rows; rows [0, size) are valid, `cursor` is the next write."""

    data: Batch
    size: jax.Array  # int32 scalar
    cursor: jax.Array  # int32 scalar

    @property
    def capacity(self) -> int:
        return next(iter(self.data.values())).shape[0]


def empty(spec: dict[str, tuple[tuple[int, ...], np.dtype]], capacity: int) -> Replay:
    """An empty replay whose field `k` holds rows of shape spec[k][0] and dtype spec[k][1]."""
    data = {k: jnp.zeros((capacity, *shape), dtype) for k, (shape, dtype) in spec.items()}
    return Replay(data, jnp.int32(0), jnp.int32(0))


def from_offline(data: OfflineData) -> Replay:
    """A full replay holding the dataset in order (sampling never overwrites it)."""
    arrays = {k: jnp.asarray(getattr(data, k), jnp.float32) for k in OFFLINE_FIELDS}
    n = len(data)
    return Replay(arrays, jnp.int32(n), jnp.int32(0))  # full: the next write wraps to row 0


def add(replay: Replay, rows: Batch) -> Replay:
    """Write a batch of rows at the cursor (FIFO: the oldest rows are overwritten). Jittable."""
    count = next(iter(rows.values())).shape[0]
    capacity = replay.capacity
    positions = (replay.cursor + jnp.arange(count)) % capacity
    data = {k: replay.data[k].at[positions].set(rows[k].astype(replay.data[k].dtype)) for k in rows}
    data = {**replay.data, **data}
    size = jnp.minimum(replay.size + count, capacity)
    cursor = (replay.cursor + count) % capacity
    return Replay(data, size.astype(jnp.int32), cursor.astype(jnp.int32))


def sample(replay: Replay, key: jax.Array, batch_size: int) -> Batch:
    """Uniform sample of `batch_size` valid rows (with replacement). Jittable."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(replay.size, 1))
    return {k: v[idx] for k, v in replay.data.items()}


def trajectory_bounds(episode_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of every stored trajectory, from the per-row end flags."""
    ends = np.flatnonzero(np.asarray(episode_ends) > 0.5)
    if len(episode_ends) and (len(ends) == 0 or ends[-1] != len(episode_ends) - 1):
        ends = np.append(ends, len(episode_ends) - 1)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    return starts, (ends - starts + 1).astype(np.int64)


def sample_windows(replay: Replay, key: jax.Array, batch_size: int, length: int) -> Batch:
    """Contiguous windows of `length` rows that never cross a trajectory end. Jittable.

    Each window's start is drawn uniformly among the valid starts: row i is a valid start when
    none of rows i..i+length-2 ends its trajectory. Returns fields of shape [batch, length, ...].
    """
    ends = replay.data["episode_ends"] > 0.5
    valid_rows = jnp.arange(replay.capacity) < replay.size
    # crosses[i] = any end among rows i .. i+length-2, computed with a cumulative sum.
    csum = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(ends.astype(jnp.int32))])
    start = jnp.arange(replay.capacity)
    stop = jnp.minimum(start + length - 1, replay.capacity)
    crosses = (csum[stop] - csum[start]) > 0
    fits = start + length <= replay.size
    ok = valid_rows & fits & ~crosses
    logits = jnp.where(ok, 0.0, -jnp.inf)
    starts = jax.random.categorical(key, logits, shape=(batch_size,))
    idx = starts[:, None] + jnp.arange(length)[None, :]
    return {k: v[idx] for k, v in replay.data.items()}
