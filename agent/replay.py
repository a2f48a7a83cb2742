"""One replay for every method: offline datasets, model-generated data and online experience.

A replay row holds `observations` and `next_observations` (dicts of typed fields: float32
states, uint8 images), `actions`, `rewards`, `masks` (0 at a true terminal), `timeouts` and
`episode_ends`. Each field keeps its own dtype.

Two homes for the rows:

* `Replay`, a pytree of device arrays plus two counters, lives inside jitted programs and is
  sampled there (no host round trip per batch): offline datasets that fit on the device, model
  buffers and online experience (a FIFO ring buffer, `add` overwrites the oldest rows);
* `HostReplay`, NumPy arrays on the host for datasets too large for the device (1M frames):
  `Prefetcher` draws the batches of the next chunk on a background thread and moves them to the
  device ahead of use.

Both sample the same way: uniform rows with replacement (`sample`), and contiguous windows that
never cross a trajectory end (`sample_windows`, for sequence models). Every sample carries the
`index` of its rows, so per-row agent data (memory returns) can be gathered beside it.

Frame stacks (`sample_stacked`, `HostReplay.sample_stacked`): each frame is stored once, in its
own row; a stacked sample gathers, for each sampled row t, the image fields of rows
t-k+1 .. t of t's trajectory side by side on channels ([H, W, k C], oldest first), repeating the
trajectory's first frame where the stack would reach before it (`frame_stack_rows`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from agent.protocol import Spec

Batch = dict[str, Any]
OBS_FIELDS = ("observations", "next_observations")
SCALAR_FIELDS = ("rewards", "masks", "timeouts", "episode_ends")
# Set while a data-parallel program traces (`sharded_batches`): device samples are split over
# the devices along their batch axis, so every gradient computed from them is too.
_batch_sharding: list[Any] = [None]


@contextlib.contextmanager
def sharded_batches(sharding: Any) -> Iterator[None]:
    """Within this block, programs being traced shard `sample` / `sample_windows` batches with
    `sharding` (a NamedSharding over the batch axis); outside it they are left to XLA."""
    previous, _batch_sharding[0] = _batch_sharding[0], sharding
    try:
        yield
    finally:
        _batch_sharding[0] = previous


def _constrain(batch: Batch) -> Batch:
    sharding = _batch_sharding[0]
    return batch if sharding is None else jax.lax.with_sharding_constraint(batch, sharding)


def row_spec(spec: Spec) -> dict:
    """Shape and dtype of one row of every field, for `empty` and for host-side chunk rows."""
    obs = {k: (tuple(f.shape), np.dtype(f.dtype)) for k, f in spec.obs.items()}
    rows: dict = {"observations": obs, "next_observations": dict(obs)}
    rows["actions"] = ((spec.act_dim,), np.dtype(np.float32))
    rows.update({k: ((), np.dtype(np.float32)) for k in SCALAR_FIELDS})
    return rows


def _is_leaf_spec(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], np.dtype)


def host_rows(spec: Spec, count: int) -> Batch:
    """Zeroed host arrays for `count` rows in the replay layout."""
    return jax.tree.map(
        lambda s: np.zeros((count, *s[0]), s[1]), row_spec(spec), is_leaf=_is_leaf_spec
    )


class Replay(NamedTuple):
    """Ring buffer of `capacity` rows; rows [0, size) are valid, `cursor` is the next write."""

    data: Batch
    size: jax.Array  # int32 scalar
    cursor: jax.Array  # int32 scalar

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def empty(spec: Spec, capacity: int) -> Replay:
    """An empty device replay of `capacity` rows in the layout of `row_spec(spec)`."""
    data = jax.tree.map(
        lambda s: jnp.zeros((capacity, *s[0]), s[1]), row_spec(spec), is_leaf=_is_leaf_spec
    )
    return Replay(data, jnp.int32(0), jnp.int32(0))


def buffer(fields: dict[str, tuple[tuple[int, ...], Any]], capacity: int) -> Replay:
    """An empty device ring buffer with arbitrary flat fields (e.g. a model's start states)."""
    data = {k: jnp.zeros((capacity, *shape), dtype) for k, (shape, dtype) in fields.items()}
    return Replay(data, jnp.int32(0), jnp.int32(0))


def full(arrays: Batch) -> Replay:
    """A device replay holding `arrays` (rows in order); full, so sampling never overwrites."""
    data = jax.tree.map(jnp.asarray, arrays)
    n = jax.tree.leaves(data)[0].shape[0]
    return Replay(data, jnp.int32(n), jnp.int32(0))  # full: the next write wraps to row 0


def add(replay: Replay, rows: Batch) -> Replay:
    """Write a batch of rows at the cursor (FIFO: the oldest rows are overwritten). Jittable."""
    count = jax.tree.leaves(rows)[0].shape[0]
    capacity = replay.capacity
    positions = (replay.cursor + jnp.arange(count)) % capacity
    data = jax.tree.map(
        lambda old, new: old.at[positions].set(jnp.asarray(new).astype(old.dtype)),
        replay.data,
        rows,
    )
    size = jnp.minimum(replay.size + count, capacity)
    cursor = (replay.cursor + count) % capacity
    return Replay(data, size.astype(jnp.int32), cursor.astype(jnp.int32))


def gather(data: Batch, idx: Any) -> Batch:
    """Rows `idx` (any integer array shape) of every field, with the indices as `index`."""
    out = jax.tree.map(lambda v: v[idx], data)
    out["index"] = idx
    return out


class FedBatch(NamedTuple):
    """One step's batch, drawn on the host from a `HostReplay` and fed into the jitted chunk;
    `sample` returns it as it is (the agent's code is the same for both homes)."""

    batch: Batch


def sample(replay: Replay | FedBatch, key: jax.Array, batch_size: int) -> Batch:
    """Uniform sample of `batch_size` valid rows (with replacement). Jittable."""
    if isinstance(replay, FedBatch):
        got = replay.batch["index"].shape[0]
        if got != batch_size:
            raise ValueError(f"fed batch has {got} rows, the agent asked for {batch_size}")
        return replay.batch
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(replay.size, 1))
    return _constrain(gather(replay.data, idx))


def trajectory_bounds(episode_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of every stored trajectory, from the per-row end flags."""
    ends = np.flatnonzero(np.asarray(episode_ends) > 0.5)
    if len(episode_ends) and (len(ends) == 0 or ends[-1] != len(episode_ends) - 1):
        ends = np.append(ends, len(episode_ends) - 1)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    return starts, (ends - starts + 1).astype(np.int64)


def window_start_mask(
    episode_ends: Any, size: Any, length: int, xp: Any = jnp, rows: tuple[int, int] | None = None
) -> Any:
    """valid[i] = row i starts a `length`-row window inside [0, size) (inside rows [lo, hi) when
    `rows` is given) that no trajectory end interrupts (no end among rows i .. i + length - 2);
    computed with a cumulative sum."""
    capacity = episode_ends.shape[0]
    ends = (episode_ends > 0.5).astype(xp.int32)
    csum = xp.concatenate([xp.zeros(1, xp.int32), xp.cumsum(ends).astype(xp.int32)])
    start = xp.arange(capacity)
    stop = xp.minimum(start + length - 1, capacity)
    crosses = (csum[stop] - csum[start]) > 0
    valid = (start < size) & (start + length <= size) & ~crosses
    if rows is not None:
        valid = valid & (start >= rows[0]) & (start + length <= rows[1])
    return valid


def sample_windows(
    replay: Replay | FedBatch,
    key: jax.Array,
    batch_size: int,
    length: int,
    rows: tuple[int, int] | None = None,
) -> Batch:
    """Contiguous windows of `length` rows that never cross a trajectory end. Jittable.

    Each window's start is drawn uniformly among the valid starts (`window_start_mask`).
    Returns fields of shape [batch, length, ...] and `index` [batch, length]; a FedBatch (windows
    drawn on the host by `HostReplay.sample_windows`) is returned as it is. `rows` = (lo, hi)
    keeps every window inside rows [lo, hi) (e.g. apart from held-out rows).
    """
    if isinstance(replay, FedBatch):
        return replay.batch
    ok = window_start_mask(replay.data["episode_ends"], replay.size, length, rows=rows)
    logits = jnp.where(ok, 0.0, -jnp.inf)
    starts = jax.random.categorical(key, logits, shape=(batch_size,))
    return _constrain(gather(replay.data, starts[:, None] + jnp.arange(length)[None, :]))


def frame_stack_rows(
    episode_ends: Any, rows: Any, frames: int, oldest: Any = 0, xp: Any = jnp
) -> Any:
    """The rows whose observations make the `frames`-frame stack of each row t of `rows` (any
    integer shape) -> [..., frames], oldest first: t-frames+1 .. t, each clamped to the first
    row of t's trajectory. A trajectory starts after a row flagged in `episode_ends` and at
    `oldest`, the oldest stored row (0 for a full offline replay, the cursor of a full ring
    buffer); rows count in ring order (modulo the capacity). Jittable (xp=jnp) or NumPy."""
    capacity = episode_ends.shape[0]
    back = xp.arange(1, frames)  # distances to the earlier frames: 1 .. frames-1
    earlier = (rows[..., None] - back) % capacity
    age = (rows - oldest) % capacity  # stored rows before t
    # An end flag at t-i closes the trajectory before t's, so t-i and every earlier row belong to
    # another one; so does a row older than the oldest stored one.
    cut = (episode_ends[earlier] > 0.5) | (back > age[..., None])
    reach = xp.sum(xp.cumsum(cut, axis=-1) == 0, axis=-1)  # earlier rows of t's trajectory
    distance = xp.minimum(xp.arange(frames - 1, -1, -1), reach[..., None])
    return (rows[..., None] - distance) % capacity


def stack_frames(images: Any, stack_rows: Any, xp: Any = jnp) -> Any:
    """Frames [N, H, W, C] at `stack_rows` [..., k] -> [..., H, W, k C]: the k frames side by side
    on channels, oldest first (the layout the pixel encoders read)."""
    frames = xp.moveaxis(images[stack_rows], -4, -2)  # [..., H, W, k, C]
    return frames.reshape(*frames.shape[:-2], -1)


def with_frame_stacks(
    batch: Batch, data: Batch, frames: int, fields: Any, oldest: Any = 0, xp: Any = jnp
) -> Batch:
    """`batch` (rows `batch["index"]` of `data`) with its observations' `fields` replaced by
    their `frames`-frame stacks (`frame_stack_rows`, `stack_frames`)."""
    stack_rows = frame_stack_rows(data["episode_ends"], batch["index"], frames, oldest, xp)
    stacked = {name: stack_frames(data["observations"][name], stack_rows, xp) for name in fields}
    return {**batch, "observations": {**batch["observations"], **stacked}}


def sample_stacked(
    replay: Replay | FedBatch, key: jax.Array, batch_size: int, frames: int, fields: Any
) -> Batch:
    """`sample` (the same rows for the same key), with the observations' image `fields` as
    stacks of their last `frames` frames ([B, H, W, frames C], module doc). A FedBatch (drawn
    by `HostReplay.sample_stacked`) is returned as it is. Jittable."""
    batch = sample(replay, key, batch_size)
    if isinstance(replay, FedBatch) or frames == 1:
        return batch
    # A full ring buffer's oldest row is at its cursor (0 for a full offline replay).
    oldest = jnp.where(replay.size >= replay.capacity, replay.cursor, 0)
    return _constrain(with_frame_stacks(batch, replay.data, frames, fields, oldest))


class HostReplay:
    """A full offline dataset kept in host memory (NumPy), sampled on the host.

    Draws are functions of (seed, draw number), so a resumed run draws the same batches.
    """

    def __init__(self, arrays: Batch) -> None:
        self.data = arrays
        self.size = jax.tree.leaves(arrays)[0].shape[0]
        self._starts: dict[tuple, np.ndarray] = {}

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        """Uniform rows with replacement: fields [batch_size, ...] and `index`."""
        return gather(self.data, rng.integers(0, self.size, batch_size))

    def sample_stacked(
        self, rng: np.random.Generator, batch_size: int, frames: int, fields: Any
    ) -> Batch:
        """`sample` (the same rows for the same generator state), with the observations' image
        `fields` as stacks of their last `frames` frames, as `sample_stacked` draws them on the
        device."""
        batch = self.sample(rng, batch_size)
        if frames == 1:
            return batch
        return with_frame_stacks(batch, self.data, frames, fields, xp=np)

    def sample_windows(
        self,
        rng: np.random.Generator,
        batch_size: int,
        length: int,
        rows: tuple[int, int] | None = None,
    ) -> Batch:
        """Windows of `length` rows inside one trajectory (and inside rows [lo, hi) when `rows`
        is given): fields [batch_size, length, ...]."""
        if (length, rows) not in self._starts:
            ok = window_start_mask(self.data["episode_ends"], self.size, length, xp=np, rows=rows)
            self._starts[length, rows] = np.flatnonzero(ok)
        starts = self._starts[length, rows]
        if not len(starts):
            where = "" if rows is None else f" within rows {rows[0]}..{rows[1]}"
            raise ValueError(f"no trajectory holds a window of {length} rows{where}")
        first = starts[rng.integers(0, len(starts), batch_size)]
        return gather(self.data, first[:, None] + np.arange(length)[None, :])


def host_rng(seed: int, draw: int) -> np.random.Generator:
    """The host sampler's generator for draw number `draw` of a run with `seed`."""
    return np.random.default_rng([seed, draw])


class Prefetcher:
    """Batches for upcoming draws, made on a background thread and put on the device ahead.

    make(draw) -> host batch; `get(draw)` returns the device batch of that draw. Draws are
    requested in increasing order; up to `depth` are prepared ahead.
    """

    def __init__(self, make: Callable[[int], Batch], first: int, depth: int = 2) -> None:
        self._make, self._next = make, first
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        draw = self._next
        while not self._stop.is_set():
            item = (draw, jax.device_put(self._make(draw)))
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            draw += 1

    def get(self, draw: int) -> Batch:
        got, batch = self._queue.get()
        if got != draw:
            raise RuntimeError(f"prefetcher out of order: wanted draw {draw}, got {got}")
        return batch

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
