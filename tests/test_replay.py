"""Replay: FIFO insertion, uniform vectorised sampling, trajectory bounds and windows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agent import replay as replay_lib

# One compiled program each, not op by op (eager dispatch dominated these checks' time).
add = jax.jit(replay_lib.add)
sample_windows = jax.jit(replay_lib.sample_windows, static_argnums=(2, 3), static_argnames="rows")


def _spec():
    return {"x": ((2,), np.float32), "episode_ends": ((), np.float32)}


def test_fifo_overwrites_oldest_rows_with_wraparound():
    replay = replay_lib.buffer(_spec(), capacity=5)
    for start in (0, 3, 6):
        rows = {
            "x": jnp.stack([jnp.arange(start, start + 3)] * 2, axis=1).astype(jnp.float32),
            "episode_ends": jnp.zeros(3),
        }
        replay = add(replay, rows)
    # Nine rows written into five slots: rows 4..8 survive, the cursor is at 9 % 5 = 4.
    assert int(replay.size) == 5 and int(replay.cursor) == 4
    assert sorted(np.asarray(replay.data["x"][:, 0]).tolist()) == [4, 5, 6, 7, 8]


def test_add_is_jittable():
    replay = replay_lib.buffer(_spec(), capacity=4)
    rows = {"x": jnp.ones((3, 2)), "episode_ends": jnp.zeros(3)}
    replay = jax.jit(replay_lib.add)(replay, rows)
    replay = jax.jit(replay_lib.add)(replay, rows)
    assert int(replay.size) == 4 and int(replay.cursor) == 2


def test_sampling_is_uniform_over_valid_rows_only():
    replay = replay_lib.buffer(_spec(), capacity=100)
    rows = {"x": jnp.arange(20.0).repeat(2).reshape(20, 2), "episode_ends": jnp.zeros(20)}
    replay = add(replay, rows)
    batch = jax.jit(replay_lib.sample, static_argnums=2)(replay, jax.random.PRNGKey(0), 20_000)
    values = np.asarray(batch["x"][:, 0]).astype(int)
    assert values.min() == 0 and values.max() == 19  # never an unfilled row
    counts = np.bincount(values, minlength=20)
    # 1000 expected per row; a 5-sigma band (sigma ~ 31) still fails on any real bias.
    assert np.all(np.abs(counts - 1000) < 160)


def test_trajectory_bounds_from_end_flags():
    ends = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0])
    starts, lengths = replay_lib.trajectory_bounds(ends)
    assert starts.tolist() == [0, 3, 4, 8]
    assert lengths.tolist() == [3, 1, 4, 2]  # the unfinished tail counts as a trajectory


@pytest.mark.parametrize("length", [1, 3])
def test_windows_never_cross_trajectory_ends(length):
    ends = np.zeros(30, np.float32)
    ends[[4, 5, 17, 29]] = 1
    replay = replay_lib.buffer(_spec(), capacity=40)
    rows = {"x": jnp.arange(30.0).repeat(2).reshape(30, 2), "episode_ends": jnp.asarray(ends)}
    replay = add(replay, rows)
    batch = sample_windows(replay, jax.random.PRNGKey(1), 2000, length)
    idx = np.asarray(batch["x"][..., 0]).astype(int)
    assert idx.shape == (2000, length)
    assert np.all(np.diff(idx, axis=1) == 1)
    assert idx.max() < 30
    # No window has an end flag anywhere but possibly its last row.
    assert not np.any(ends[idx[:, :-1]])
    if length == 3:
        starts = set(idx[:, 0].tolist())
        assert 5 not in starts and 4 not in starts and 3 not in starts
        expected = set(range(0, 3)) | set(range(6, 16)) | set(range(18, 28))
        assert starts == expected


def test_host_replay_windows_and_rows_match_the_device_rules():
    """HostReplay draws the same kind of samples on the host: valid window starts are the device
    replay's, every row keeps its dtype (uint8 frames stay uint8), and draws are functions of
    (seed, draw number)."""
    ends = np.zeros(30, np.float32)
    ends[[4, 5, 17, 29]] = 1
    rows = {
        "x": np.arange(30.0, dtype=np.float32).repeat(2).reshape(30, 2),
        "frame": np.arange(30, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2),
        "episode_ends": ends,
    }
    host = replay_lib.HostReplay(rows)
    batch = host.sample_windows(replay_lib.host_rng(0, 7), 2000, 3)
    idx = batch["index"]
    assert batch["frame"].dtype == np.uint8 and batch["frame"].shape == (2000, 3, 4, 4)
    assert np.all(np.diff(idx, axis=1) == 1) and not np.any(ends[idx[:, :-1]])
    device = replay_lib.window_start_mask(jnp.asarray(ends), 30, 3)
    assert set(idx[:, 0].tolist()) == set(np.flatnonzero(np.asarray(device)).tolist())
    again = host.sample_windows(replay_lib.host_rng(0, 7), 2000, 3)
    np.testing.assert_array_equal(again["index"], idx)
    uniform = host.sample(replay_lib.host_rng(0, 8), 64)
    np.testing.assert_array_equal(uniform["x"][:, 0], uniform["index"])


def test_prefetcher_hands_out_draws_in_order():
    made = []

    def make(draw):
        made.append(draw)
        return {"value": np.full(2, draw)}

    prefetcher = replay_lib.Prefetcher(make, first=5)
    try:
        for draw in (5, 6, 7):
            np.testing.assert_array_equal(np.asarray(prefetcher.get(draw)["value"]), [draw] * 2)
        with pytest.raises(RuntimeError, match="out of order: wanted draw 10, got 8"):
            prefetcher.get(10)
    finally:
        prefetcher.close()
    assert made[:4] == [5, 6, 7, 8]


def test_windows_stay_inside_the_given_rows_on_device_and_host():
    ends = np.zeros(30, np.float32)
    ends[[9, 19, 29]] = 1
    rows = {"x": np.arange(30.0, dtype=np.float32)[:, None], "episode_ends": ends}
    device = replay_lib.full({k: jnp.asarray(v) for k, v in rows.items()})
    host = replay_lib.HostReplay(rows)
    for lo, hi in ((0, 24), (24, 30)):
        d = sample_windows(device, jax.random.PRNGKey(0), 500, 4, rows=(lo, hi))
        h = host.sample_windows(replay_lib.host_rng(0, 1), 500, 4, rows=(lo, hi))
        for batch in (np.asarray(d["index"]), h["index"]):
            assert batch.min() >= lo and batch.max() < hi
            assert not np.any(ends[batch[:, :-1]])
    assert set(np.asarray(d["index"])[:, 0].tolist()) == {24, 25, 26}
    with pytest.raises(ValueError, match="within rows 26..30"):
        host.sample_windows(replay_lib.host_rng(0, 1), 5, 5, rows=(26, 30))
