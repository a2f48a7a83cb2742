"""Frame stacks for BC from pixels (`bc.frame_stack`, as V-D4RL's DrQ+BC stacks 3 frames).

The replay stores each frame once and gathers stacks when it samples; the policy carries the
stack of the episode in progress. Checked on the session's tiny real pixel dataset (one 500-step
cartpole-swingup episode, cut into trajectories of 1 to 300 rows so that stacks meet many
trajectory starts): the replay's stacks against a Python loop, the policy's carried stack
against the replay's, DrQ's shift of a stack as one image, and frame_stack=1 against the
single-frame BC it replaces.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agent import replay as replay_lib
from agent.config import load_config
from agent.methods import agent_class
from agent.observations import observation_stats
from agent.programs import Programs
from agent.protocol import EVAL, Context
from tests.conftest import tiny_random_pixels

IMAGE = "image"
# Rows that end a trajectory: trajectories of 1, 2, 3, 1, 53, 1, 139 and 300 rows.
ENDS = (0, 2, 5, 6, 59, 60, 199, 499)
BATCH = 128


def preset(data, *sets: str):
    """BC from pixels at the debug sizes (16x16 frames) on the session's tiny pixel dataset."""
    return load_config(["bc_pixels_cartpole_swingup", "debug"], [*tiny_random_pixels(data), *sets])


@pytest.fixture(scope="module")
def pixels(pixel_data_dir):
    """(config, spec, rows): the tiny dataset's rows in the replay layout, cut at ENDS."""
    from agent.runner.sources import config_task, dataset_arrays, task_spec
    from envs.datasets import load_task_dataset

    cfg = preset(pixel_data_dir)
    task = config_task(cfg)
    rows = dataset_arrays(load_task_dataset(task, cfg.dataset))
    assert rows["observations"][IMAGE].shape == (500, 16, 16, 3)
    ends = np.zeros(500, np.float32)
    ends[list(ENDS)] = 1.0
    rows["episode_ends"] = rows["timeouts"] = ends
    return cfg, task_spec(task), rows


def reference_stacks(images: np.ndarray, ends: np.ndarray, rows, k: int) -> np.ndarray:
    """For each row t: frames max(t - d, start of t's trajectory) for d = k-1 .. 0, joined on
    channels; the start found by walking back to the row after the previous end flag."""
    out = []
    for t in np.asarray(rows).tolist():
        start = t
        while start > 0 and ends[start - 1] < 0.5:
            start -= 1
        out.append(np.concatenate([images[max(t - d, start)] for d in range(k - 1, -1, -1)], -1))
    return np.stack(out)


def test_stacked_batches_equal_a_loop_over_trajectory_starts(pixels):
    _, _, rows = pixels
    images, ends = rows["observations"][IMAGE], rows["episode_ends"]
    every = np.arange(len(ends))
    for k in (2, 3, 5):  # every row, hence every trajectory start and clamped stack
        stack_rows = replay_lib.frame_stack_rows(ends, every, k, xp=np)
        got = replay_lib.stack_frames(images, stack_rows, xp=np)
        np.testing.assert_array_equal(got, reference_stacks(images, ends, every, k), err_msg=k)
    expected = reference_stacks(images, ends, every, 3)

    host = replay_lib.HostReplay(rows)
    plain = host.sample(replay_lib.host_rng(0, 7), BATCH)
    batch = host.sample_stacked(replay_lib.host_rng(0, 7), BATCH, 3, [IMAGE])
    np.testing.assert_array_equal(batch["index"], plain["index"])  # the rows `sample` draws
    np.testing.assert_array_equal(batch["observations"][IMAGE], expected[batch["index"]])
    np.testing.assert_array_equal(batch["actions"], plain["actions"])
    assert batch["observations"][IMAGE].dtype == np.uint8

    both = jax.jit(  # one program: run op by op, sampling compiles a dozen tiny ones
        lambda r, k: (
            replay_lib.sample_stacked(r, k, BATCH, 3, (IMAGE,)),
            replay_lib.sample(r, k, BATCH)["index"],
        )
    )
    batch, index = jax.device_get(both(replay_lib.full(rows), jax.random.PRNGKey(3)))
    np.testing.assert_array_equal(batch["index"], index)  # the rows `sample` draws
    np.testing.assert_array_equal(batch["observations"][IMAGE], expected[batch["index"]])
    starts = np.asarray(ENDS[:-1]) + 1
    assert np.isin(batch["index"], np.concatenate([[0], starts, starts + 1])).any()  # clamped


def test_a_full_ring_buffers_stacks_start_at_its_oldest_row(pixels):
    """Rows rolled by `cursor` into a full ring buffer give the stacks of the rows they were:
    the oldest row (at the cursor) starts a trajectory, never continuing the newest rows."""
    _, _, rows = pixels
    images, ends, cursor = rows["observations"][IMAGE], rows["episode_ends"], 100
    ring = replay_lib.Replay(
        jax.tree.map(lambda x: jnp.asarray(np.roll(x, cursor, axis=0)), rows),
        jnp.int32(500),
        jnp.int32(cursor),
    )
    draw = jax.jit(lambda r, k: replay_lib.sample_stacked(r, k, BATCH, 3, (IMAGE,)))
    batch = jax.device_get(draw(ring, jax.random.PRNGKey(5)))
    original = (batch["index"] - cursor) % 500
    expected = reference_stacks(images, ends, original, 3)
    np.testing.assert_array_equal(batch["observations"][IMAGE], expected)


@pytest.fixture(scope="module")
def bc(pixels):
    """(agent, state, programs) of BC from pixels with the default frame stack."""
    cfg, spec, rows = pixels
    assert cfg.bc.frame_stack == 3  # the default, as V-D4RL's DrQ+BC
    mean, std = observation_stats(rows["observations"], spec)
    agent = agent_class("bc")(cfg, spec, Context(obs_mean=mean, obs_std=std, data_size=500))
    state = jax.jit(lambda key: agent.init(key, spec))(jax.random.PRNGKey(0))
    return agent, state, Programs(agent)


def test_the_policys_carried_stack_is_the_replays_stack_at_each_step(pixels, bc):
    """Two episodes in lockstep (as evaluation runs them), started with carry None at two
    trajectory starts: at every step the carry is the replay's stack of that row, and the action
    is the network's on it."""
    _, _, rows = pixels
    agent, state, programs = bc
    images, ends = rows["observations"][IMAGE], rows["episode_ends"]
    first = np.array([7, 200])  # trajectories 7..59 and 200..499
    apply = jax.jit(agent.net.apply)
    carry, key = None, jax.random.PRNGKey(0)
    for t in range(6):
        at = first + t
        carry, action = programs.policy(state, carry, {IMAGE: images[at]}, EVAL, key)
        assert set(carry) == {IMAGE} and carry[IMAGE].shape == (2, 16, 16, 9)  # batch leading
        assert carry[IMAGE].dtype == jnp.uint8
        replayed = replay_lib.stack_frames(
            images, replay_lib.frame_stack_rows(ends, at, 3, xp=np), xp=np
        )
        np.testing.assert_array_equal(carry[IMAGE], replayed, err_msg=f"step {t}")
        np.testing.assert_array_equal(replayed, reference_stacks(images, ends, at, 3))
        on_replay = apply(state.params, {IMAGE: replayed}, state.obs_mean, state.obs_std)
        np.testing.assert_allclose(action, on_replay, rtol=1e-6, atol=1e-6)


def test_random_shift_moves_every_frame_of_a_stack_by_one_offset(pixels, bc):
    _, _, rows = pixels
    agent, _, _ = bc
    pad = agent.shift
    at = np.arange(3, 35)  # stacks of three different frames, and clamped ones
    stacks = replay_lib.stack_frames(
        rows["observations"][IMAGE],
        replay_lib.frame_stack_rows(rows["episode_ends"], at, 3, xp=np),
        xp=np,
    )
    shifted = np.asarray(jax.jit(agent._augment)({IMAGE: stacks}, jax.random.PRNGKey(1))[IMAGE])
    padded = np.pad(stacks, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = list(itertools.product(range(2 * pad + 1), repeat=2))
    moved = 0
    for b in range(len(at)):
        fits = [  # the offsets that explain each frame of the shifted stack
            {
                (y, x)
                for y, x in offsets
                if np.array_equal(
                    padded[b, y : y + 16, x : x + 16, 3 * j : 3 * j + 3],
                    shifted[b, ..., 3 * j : 3 * j + 3],
                )
            }
            for j in range(3)
        ]
        assert set.intersection(*fits), f"stack {b}: its frames moved by different offsets {fits}"
        moved += (pad, pad) not in set.intersection(*fits)
    assert moved > len(at) // 2  # the augmentation did move the stacks


def test_host_fed_stacked_batches_train(pixels, bc):
    """BC's host batches (`host_batch`, the path of a dataset kept on the host) carry stacks and
    train through the fed chunk program."""
    _, _, rows = pixels
    agent, state, programs = bc
    host = replay_lib.HostReplay(rows)
    batches = [agent.host_batch("bc", host, replay_lib.host_rng(0, t)) for t in range(2)]
    assert batches[0]["observations"][IMAGE].shape == (agent.batch, 16, 16, 9)
    fed = jax.tree.map(lambda *x: np.stack(x), *batches)
    new_state, metrics = programs.chunk("bc", 2, fed=True)(state, fed, jax.random.PRNGKey(0), 0)
    assert np.isfinite(float(metrics["train/loss"]))
    single = host.sample(replay_lib.host_rng(0, 0), agent.batch)  # unstacked frames: in words
    with pytest.raises(ValueError, match="stacks of 3 frames"):
        unstacked = jax.tree.map(lambda x: x[None], single)
        programs.chunk("bc", 1, fed=True)(state, unstacked, jax.random.PRNGKey(0), 0)


# The update record of BC on the contract's image spec (tests/test_agent_contract.py) made by
# the single-frame BC before frame stacks existed (tests/records/update_records_O0.json,
# "bc/image"): frame_stack=1 must still give it.
SINGLE_FRAME_RECORD = {
    "train/grad_norm": 4.099106311798096,
    "train/loss": 1.030561923980713,
}
SINGLE_FRAME_ACTIONS = [  # the policy's after those steps, on the first 7 rows' observations
    [-0.23392874002456665, 0.29713356494903564],
    [-0.388054758310318, 0.1715942919254303],
    [-0.5988735556602478, 0.14663220942020416],
    [-0.6492475271224976, 0.2563265860080719],
    [-0.4571261405944824, 0.45525386929512024],
    [-0.7500948905944824, 0.30022743344306946],
    [-0.5639510750770569, 0.36576125025749207],
]


def test_frame_stack_1_is_the_single_frame_bc():
    from tests.test_agent_contract import ROWS, SPECS, synthetic_rows
    from tests.update_records import ATOL, RTOL

    spec, rows = SPECS["image"], synthetic_rows(SPECS["image"], ROWS)
    cfg = load_config(["debug"], ["method=bc", "train.steps=400", "bc.frame_stack=1"])
    mean, std = observation_stats(rows["observations"], spec)
    agent = agent_class("bc")(cfg, spec, Context(obs_mean=mean, obs_std=std, data_size=ROWS))
    replay, rng = replay_lib.full(rows), jax.random.PRNGKey(0)
    both = jax.jit(
        lambda r, k: (replay_lib.sample_stacked(r, k, 8, 1, (IMAGE,)), replay_lib.sample(r, k, 8))
    )
    same, plain = jax.device_get(both(replay, jax.random.PRNGKey(4)))
    assert jax.tree.all(jax.tree.map(np.array_equal, same, plain))
    host = replay_lib.HostReplay(rows)
    batch = agent.host_batch("bc", host, replay_lib.host_rng(0, 0))
    plain = host.sample(replay_lib.host_rng(0, 0), agent.batch)
    assert jax.tree.all(jax.tree.map(np.array_equal, batch, plain))

    programs = Programs(agent)
    state = jax.jit(lambda k: agent.init(k, spec))(jax.random.fold_in(rng, 0))
    state, metrics = programs.chunk("bc", 2)(state, replay, rng, 0)
    for name, value in SINGLE_FRAME_RECORD.items():
        np.testing.assert_allclose(float(metrics[name]), value, rtol=RTOL, atol=ATOL, err_msg=name)
    obs = {k: v[:7] for k, v in rows["observations"].items()}
    carry, actions = programs.policy(state, None, obs, EVAL, rng)
    np.testing.assert_allclose(actions, SINGLE_FRAME_ACTIONS, rtol=RTOL, atol=ATOL)
    assert carry is None  # a single-frame policy keeps no memory
