"""GEM: losses against their formulas, the twin pairing, the memory refresh over a wrapped ring
buffer against brute force, the chunk program (targets + memory refresh, then train steps that
read the memory by row index), a debug online run with exact resume, and the behaviour-policy
pipeline (snapshots -> export -> deterministic collection)."""

from __future__ import annotations

import json

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from agent import replay as replay_lib
from agent.actor_critic import LEARN
from agent.config import ConfigError, load_config
from agent.gem import GEMAgent, losses
from agent.networks import deterministic_actor
from agent.observations import STATE, state_spec
from agent.protocol import EVAL, EXPLORE, WARMUP, Context, Spec
from envs.datasets.trained_policies import POLICY_DIR
from tests.conftest import cli, leaves_equal, run_chunk
from tests.resume import assert_same_final_state, copy_as_killed_after, final_state
from tests.test_memory import brute_force

OBS, ACT = 11, 3
SPEC = Spec(state_spec(OBS), ACT)


def init_jitted(agent, seed: int):
    """agent.init as one compiled program (op by op it compiles hundreds of small kernels)."""
    return jax.jit(lambda key: agent.init(key, SPEC))(jax.random.PRNGKey(seed))


def make_agent(names: list[str], overrides: list[str]) -> GEMAgent:
    """A GEM agent on an 11-dim state / 3-dim action task (hopper's sizes), built as the runner
    builds online agents (an identity observation normaliser)."""
    return GEMAgent(load_config(names, overrides), SPEC, Context())


def filled_replay(rows: dict, capacity: int) -> replay_lib.Replay:
    """An empty online replay of `capacity` rows with `rows` added (FIFO)."""
    return replay_lib.add(replay_lib.empty(SPEC, capacity), rows)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.2])
def test_asymmetric_loss_matches_its_two_branches(alpha):
    rng = np.random.default_rng(0)
    r, q = rng.normal(size=200), rng.normal(size=200)
    expected = np.where(q > r, (q - r) ** 2 / alpha, alpha * (r - q) ** 2)
    np.testing.assert_allclose(losses.asymmetric_loss(jnp.asarray(r - q), alpha), expected, 1e-5)
    if alpha == 0.5:  # over-estimation costs 4x more than under-estimation by the same amount
        assert float(losses.asymmetric_loss(jnp.float32(-1.0), 0.5)) == pytest.approx(2.0)
        assert float(losses.asymmetric_loss(jnp.float32(1.0), 0.5)) == pytest.approx(0.5)


@pytest.mark.slow  # gradients of four critics, twice per pairing (~4 s)
def test_critic_loss_pairings_match_loops():
    rng = np.random.default_rng(1)
    q, ret = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    columns = [0, 0, 1, 1]  # critics 1, 2 -> R^A; critics 3, 4 -> R^B

    def ell(u):
        return np.where(u < 0, u**2 / 0.5, 0.5 * u**2)

    twin = np.mean([[ell(ret[b, columns[k]] - q[b, k]) for k in range(4)] for b in range(16)])
    broadcast = np.mean(
        [
            [[ell(ret[b, columns[j]] - q[b, k]) for j in range(4)] for k in range(4)]
            for b in range(16)
        ]
    )
    got_twin = losses.critic_loss(jnp.asarray(q), jnp.asarray(ret), 0.5, "twin")
    got_broadcast = losses.critic_loss(jnp.asarray(q), jnp.asarray(ret), 0.5, "broadcast")
    np.testing.assert_allclose(got_twin, twin, rtol=1e-5)
    np.testing.assert_allclose(got_broadcast, broadcast, rtol=1e-5)
    assert abs(twin - broadcast) > 1e-3  # the two choices really differ

    # Only the twin pairing lets critics 1, 2 ignore R^B (and critics 3, 4 ignore R^A): perturb
    # one return column and compare each critic's parameter gradient, through the critic nets.
    from agent.gem.networks import critics

    net = critics([8, 8])
    obs, act = jnp.asarray(rng.normal(size=(16, 11))), jnp.asarray(rng.uniform(-1, 1, (16, 3)))
    params = jax.jit(net.init)(jax.random.PRNGKey(0), obs, act)

    @jax.jit
    def loss(p, returns, pairing_is_twin):
        q = net.apply(p, obs, act)
        twin = losses.critic_loss(q, returns, 0.5, "twin")
        return jnp.where(pairing_is_twin, twin, losses.critic_loss(q, returns, 0.5, "broadcast"))

    gradient = jax.jit(jax.grad(loss))

    def grads_by_critic(returns, pairing):
        # row k of every stacked leaf belongs to critic k + 1
        grads = gradient(params, jnp.asarray(returns), pairing == "twin")

        def of_critic(k):
            return np.concatenate([np.ravel(leaf[k]) for leaf in jax.tree.leaves(grads)])

        return {k: of_critic(k) for k in range(4)}

    for moved_column, ignoring in ((1, (0, 1)), (0, (2, 3))):
        moved = ret.copy()
        moved[:, moved_column] += rng.normal(size=16)
        for pairing in ("twin", "broadcast"):
            before, after = grads_by_critic(ret, pairing), grads_by_critic(moved, pairing)
            for k in range(4):
                unchanged = np.array_equal(before[k], after[k])
                assert np.any(before[k] != 0), (pairing, k)
                expected = pairing == "twin" and k in ignoring
                assert unchanged == expected, (pairing, moved_column, k)


def test_twin_values_and_one_step_returns():
    q = jnp.array([[1.0, 2.0, 5.0, 3.0], [0.0, -1.0, 2.0, 2.5]])
    np.testing.assert_array_equal(losses.twin_values(q), [[1.0, 3.0], [-1.0, 2.0]])
    out = losses.one_step_returns(
        jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]), jnp.array([[10.0, 20.0], [30.0, 40.0]]), 0.9
    )
    np.testing.assert_allclose(out, [[10.0, 19.0], [2.0, 2.0]])  # a terminal never bootstraps


@pytest.fixture(scope="module")
def small_agent():
    return make_agent(
        ["gem_hopper", "debug"],
        ["gem.capacity=64", "gem.target_noise=0.0", "gem.refresh_chunk=24"],
    )


def _rows(rng, lengths_and_terminal):
    """Replay rows (observations as {"state": ...} fields) of episodes (length, terminal?)."""
    rows = {k: [] for k in ("observations", "actions", "rewards", "next_observations")}
    rows.update(masks=[], timeouts=[], episode_ends=[])
    for length, terminal in lengths_and_terminal:
        for t in range(length):
            last = t == length - 1
            rows["observations"].append(rng.normal(size=OBS))
            rows["actions"].append(rng.uniform(-1, 1, ACT))
            rows["rewards"].append(rng.normal())
            rows["next_observations"].append(rng.normal(size=OBS))
            rows["masks"].append(0.0 if last and terminal else 1.0)
            rows["timeouts"].append(1.0 if last and not terminal else 0.0)
            rows["episode_ends"].append(1.0 if last else 0.0)
    rows = {k: np.asarray(v, np.float32) for k, v in rows.items()}
    for k in replay_lib.OBS_FIELDS:
        rows[k] = {STATE: rows[k]}
    return rows


def moved(tree, seed):
    """`tree` with every leaf moved by N(0, 0.3^2) noise (targets distinct from the online nets)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    noise = [0.3 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, [x + n for x, n in zip(leaves, noise, strict=True)])


@pytest.mark.slow  # row-by-row brute force (~6 s)
def test_memory_refresh_over_a_wrapped_ring_buffer_matches_brute_force():
    # The refresh must read the TARGET actor and critics at smoothed target actions: smoothing on
    # (the preset's target_noise 0.2, clip 0.5) and target networks moved away from the online ones.
    agent = make_agent(["gem_hopper", "debug"], ["gem.capacity=64", "gem.refresh_chunk=24"])
    g = agent.g
    assert g.target_noise > 0 and g.target_noise_clip > 0
    rng = np.random.default_rng(3)
    # 90 rows into 64: the oldest episode is cut, terminal/truncated/length-1 episodes, and the
    # newest episode is still in progress (its last row is not an end).
    episodes = [(20, True), (1, False), (15, False), (1, True), (30, True), (12, False), (11, None)]
    rows = _rows(rng, episodes)
    rows["episode_ends"][-1] = rows["timeouts"][-1] = 0.0
    rows["masks"][-1] = 1.0
    state = init_jitted(agent, 0)
    state = state._replace(
        target_actor_params=moved(state.actor_params, 10),
        target_critic_params=moved(state.critic_params, 11),
    )
    replay = filled_replay(rows, g.capacity)
    cursor = int(replay.cursor)
    assert cursor == 90 - 64
    key = jax.random.PRNGKey(1)
    memory, values = jax.jit(agent.refresh_memory)(state, replay, key)
    got = np.roll(np.asarray(memory), -cursor, axis=0)  # oldest first
    # The chunk size is a speed setting: one chunk of every row gives the same memory.
    whole = make_agent(["gem_hopper", "debug"], ["gem.capacity=64", "gem.refresh_chunk=64"])
    memory_whole, values_whole = jax.jit(whole.refresh_memory)(state, replay, key)
    np.testing.assert_allclose(memory_whole, memory, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(values_whole, values, rtol=1e-6, atol=1e-6)

    # Brute force, row by row in storage order: row i's noise is row i of one N(0, 0.2^2) draw
    # [64, act_dim] from the refresh key.
    noise = g.target_noise * np.asarray(jax.random.normal(key, (64, ACT)))
    next_obs = np.asarray(replay.data["next_observations"][STATE])

    actor, critic = jax.jit(agent.actor_net.apply), jax.jit(agent.critic_net.apply)

    def twin_values(actor_params, critic_params, smoothing):
        values = np.zeros((64, 2))
        for row in range(64):
            eps = noise[row]
            obs = next_obs[row][None]
            action = np.asarray(actor(actor_params, obs))[0]
            eps = np.clip(eps, -g.target_noise_clip, g.target_noise_clip)
            action = np.clip(action + smoothing * eps, -1.0, 1.0)
            q = np.asarray(critic(critic_params, obs, action[None]))[0]
            values[row] = min(q[0], q[1]), min(q[2], q[3])
        return np.roll(values, -cursor, axis=0)

    kept = {k: v[-64:] for k, v in rows.items() if k not in replay_lib.OBS_FIELDS}  # oldest first

    def memory_from(values):
        return brute_force(
            kept["rewards"],
            values,
            1.0 - kept["masks"],
            kept["episode_ends"],
            g.gamma,
            True,
            "twin",
        )

    target = (state.target_actor_params, state.target_critic_params)
    np.testing.assert_allclose(got, memory_from(twin_values(*target, 1.0)), rtol=1e-4, atol=1e-4)
    # Sensitivity: the online networks, or no smoothing, would give a different memory.
    online = (state.actor_params, state.critic_params)
    assert np.abs(got - memory_from(twin_values(*online, 1.0))).max() > 1e-2
    assert np.abs(got - memory_from(twin_values(*target, 0.0))).max() > 1e-2


@pytest.mark.slow  # compiles a refresh (~4 s)
def test_partly_filled_memory_ignores_empty_rows(small_agent):
    agent = small_agent
    rows = _rows(np.random.default_rng(4), [(10, True), (7, False)])
    state = init_jitted(agent, 0)
    replay = filled_replay(rows, agent.g.capacity)
    memory = np.asarray(jax.jit(agent.refresh_memory)(state, replay, jax.random.PRNGKey(1))[0])
    next_obs = jnp.asarray(rows["next_observations"][STATE])
    values = np.asarray(jax.jit(agent.target_twin_values)(state, next_obs, jax.random.key(2)))
    expected = brute_force(
        rows["rewards"], values, 1.0 - rows["masks"], rows["episode_ends"], 0.99, True, "twin"
    )
    np.testing.assert_allclose(memory[:17], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # compiles two refreshes
def test_refresh_every_k_reevaluates_a_rotating_slice_and_the_newest_rows(small_agent):
    """gem.refresh_every 4 on 64 rows (train_every 10): the first learning chunk evaluates every
    row; chunk c evaluates rows [16 (c mod 4), 16 (c mod 4) + 16) and the 10 rows before the
    cursor, keeps every other row's value, and the kernel sweeps all rows with them."""
    full = small_agent  # target_noise 0: the values are deterministic
    agent = make_agent(
        ["gem_hopper", "debug"],
        ["gem.capacity=64", "gem.target_noise=0.0", "gem.refresh_every=4", "gem.train_every=10"],
    )
    replay = filled_replay(_rows(np.random.default_rng(9), [(40, True), (50, False)]), 64)
    cursor = int(replay.cursor)
    state = init_jitted(agent, 0)
    key = jax.random.PRNGKey(3)
    refresh = jax.jit(agent.refresh_memory)
    memory, values = refresh(state, replay, key)  # step 0: every row
    _, every_row = jax.jit(full.refresh_memory)(state, replay, key)
    np.testing.assert_allclose(values, every_row, rtol=1e-5, atol=1e-6)

    kept = np.full((64, 2), 7.0, np.float32)  # stand-in kept values, to see which rows change
    later = state._replace(step=jnp.int32(5 * agent.g.gradient_steps), values=jnp.asarray(kept))
    memory, values = refresh(later, replay, key)  # chunk 5: slice 1
    fresh = set(range(16, 32)) | {(cursor - 10 + i) % 64 for i in range(10)}
    for row in range(64):
        want = every_row[row] if row in fresh else kept[row]
        np.testing.assert_allclose(values[row], want, rtol=1e-5, atol=1e-6, err_msg=str(row))
    oldest_first = {k: np.roll(v, -cursor) for k, v in replay.data.items() if k in KERNEL_KEYS}
    expected = brute_force(
        oldest_first["rewards"],
        np.roll(np.asarray(values), -cursor, axis=0),
        1.0 - oldest_first["masks"],
        oldest_first["episode_ends"],
        agent.g.gamma,
        True,
        "twin",
    )
    np.testing.assert_allclose(np.roll(memory, -cursor, axis=0), expected, rtol=1e-4, atol=1e-4)


def test_refresh_every_must_divide_the_capacity():
    with pytest.raises(ConfigError, match="gem.refresh_every=3 must divide gem.capacity=64"):
        make_agent(["gem_hopper", "debug"], ["gem.capacity=64", "gem.refresh_every=3"])


KERNEL_KEYS = ("rewards", "masks", "episode_ends")


@pytest.mark.slow  # compiles a GEM chunk (~5 s)
def test_chunk_moves_targets_refreshes_memory_and_trains_on_it():
    """What the runner's chunk program does for GEM once learning has started: begin_chunk
    moves the targets by target_rate and then refreshes the memory with the moved targets on the
    replay it is given; each train step regresses the critics to the memory returns of the
    sampled rows (gathered by the batch's `index`)."""
    agent = make_agent(["gem_hopper", "debug"], ["gem.capacity=64", "gem.refresh_chunk=24"])
    rows = _rows(np.random.default_rng(6), [(20, True), (30, False), (5, None)])
    replay = filled_replay(rows, agent.g.capacity)
    state = init_jitted(agent, 0)
    state = state._replace(
        target_actor_params=moved(state.actor_params, 13),
        target_critic_params=moved(state.critic_params, 12),
    )
    key = jax.random.PRNGKey(7)
    begun, metrics = jax.jit(agent.begin_chunk, static_argnums=0)(LEARN, state, replay, key)

    rate = agent.g.target_rate
    assert 0 < rate < 1
    for online, target, name in (
        (state.actor_params, state.target_actor_params, "target_actor_params"),
        (state.critic_params, state.target_critic_params, "target_critic_params"),
    ):
        expected = jax.tree.map(lambda o, t: rate * o + (1 - rate) * t, online, target)
        for got, want in zip(
            jax.tree.leaves(getattr(begun, name)), jax.tree.leaves(expected), strict=True
        ):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
    expected_memory, expected_values = agent.refresh_memory(begun, replay, key)
    np.testing.assert_allclose(begun.memory, expected_memory, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(begun.values, expected_values, rtol=1e-5, atol=1e-5)
    stale, _ = agent.refresh_memory(state, replay, key)  # before the target move: differs
    assert np.abs(np.asarray(begun.memory) - np.asarray(stale)).max() > 1e-3
    size = int(replay.size)
    assert size == 55 < replay.capacity
    mean = np.asarray(begun.memory)[:size].mean()  # over the filled rows only
    np.testing.assert_allclose(metrics["train/memory_return"], mean, rtol=1e-5)

    # One train step: its batch is replay_lib.sample with the first half of the step key, and the
    # critics' target is the memory of exactly those rows.
    step_key = jax.random.PRNGKey(8)
    after, step_metrics = jax.jit(agent.train, static_argnums=0)(LEARN, begun, replay, step_key)
    batch = replay_lib.sample(replay, jax.random.split(step_key)[0], agent.g.batch_size)
    expected_target = np.asarray(begun.memory)[np.asarray(batch["index"])].mean()
    np.testing.assert_allclose(step_metrics["train/target_return"], expected_target, rtol=1e-5)
    assert int(after.step) == 1 and np.isfinite(step_metrics["train/actor_loss"])  # step 0: actor
    assert not leaves_equal(after.critic_params, begun.critic_params)
    assert not leaves_equal(after.actor_params, begun.actor_params)
    assert leaves_equal(after.memory, begun.memory)  # train steps never touch the memory


@pytest.mark.slow  # compiles a TD3 chunk (~7 s)
def test_td3_switch_uses_one_step_targets_and_no_memory():
    memory_off = ["gem.memory=false", "gem.alpha=1.0", "gem.target_noise=0.0"]
    agent = make_agent(["gem_hopper", "debug"], memory_off)
    # Each piece as one compiled program: op by op, these compile hundreds of small kernels.
    state = jax.jit(lambda key: agent.init(key, SPEC))(jax.random.PRNGKey(0))
    rows = _rows(np.random.default_rng(5), [(30, True), (20, False)])
    batch = jax.tree.map(jnp.asarray, rows)
    _, metrics = jax.jit(agent.critic_update)(state, batch, jax.random.PRNGKey(0))
    next_obs = batch["next_observations"][STATE]
    next_q = jax.jit(agent.target_twin_values)(state, next_obs, jax.random.PRNGKey(0))
    expected = rows["rewards"][:, None] + 0.99 * rows["masks"][:, None] * np.asarray(next_q)
    np.testing.assert_allclose(metrics["train/target_return"], expected.mean(), rtol=1e-5)
    # A whole chunk (begin_chunk + the gradient steps) computes no memory.
    replay = filled_replay(rows, agent.replay_capacity)
    after, out = run_chunk(agent, state, replay, LEARN, 4)
    assert "train/memory_return" not in out and "train/critic_loss" in out
    assert int(after.step) == 4
    assert not np.any(np.asarray(after.memory))


def test_online_schedule_and_policy_modes(small_agent):
    """The runner acts at random (WARMUP) before learning_starts, then runs LEARN chunks of
    gradient_steps updates every train_every env steps; the policy is pi(s) in EVAL and
    clip(pi(s) + N(0, exploration_noise^2), -1, 1) in EXPLORE."""
    agent, g = small_agent, small_agent.g
    assert agent.online and agent.replay_capacity == g.capacity == 64
    assert (
        agent.env_steps_per_chunk == g.train_every and agent.updates_per_chunk == g.gradient_steps
    )
    assert agent.phase(0) == agent.phase(g.learning_starts - 1) == WARMUP
    assert agent.phase(g.learning_starts) == LEARN
    state = init_jitted(agent, 0)
    obs = {STATE: jnp.asarray(np.random.default_rng(9).normal(size=(256, OBS)), jnp.float32)}
    pi = np.asarray(agent.actor_net.apply(state.actor_params, obs[STATE]))
    key = jax.random.PRNGKey(3)
    carry, action = agent.policy(state, None, obs, EVAL, key)
    assert carry is None
    np.testing.assert_array_equal(action, pi)
    _, noisy = agent.policy(state, None, obs, EXPLORE, key)
    noise = g.exploration_noise * np.asarray(jax.random.normal(key, pi.shape))
    np.testing.assert_allclose(noisy, np.clip(pi + noise, -1.0, 1.0), rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(noisy) - pi).max() > 0
    leaves = agent.snapshot_params(state)
    assert leaves_equal(leaves, state.actor_params)


def test_config_errors():
    with pytest.raises(ConfigError, match="gem.pairing"):
        make_agent(["gem_hopper"], ["gem.pairing=mixed"])
    with pytest.raises(ConfigError, match="learning_starts"):
        make_agent(["gem_hopper"], ["gem.learning_starts=150"])


def test_numpy_actor_matches_the_haiku_actor():
    from envs.datasets.trained_policies import NumpyActor

    net = deterministic_actor([16, 8], 3, layer_norm=True)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 11)))
    params = jax.tree.map(
        lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x.shape), params
    )
    flat = {f"{m}/{n}": np.asarray(v) for m, leaves in params.items() for n, v in leaves.items()}
    obs = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    np.testing.assert_allclose(NumpyActor(flat)(obs), net.apply(params, obs), atol=1e-5)
    assert isinstance(hk.data_structures.to_haiku_dict(params), dict)


def test_select_snapshots():
    from envs.datasets.export import select_snapshots

    steps = list(range(1000, 31000, 1000))
    returns = {s: s / 10 for s in steps}  # expert 3000 at 30000; a third = 1000 at 10000
    expert, medium, replay, full = select_snapshots(steps, returns, learning_starts=5000)
    assert expert == 30000 and medium == 10000
    assert replay == [6000, 7000, 8000, 9000, 10000]
    assert len(full) == 10 and full[0] == 6000 and full[-1] == 30000
    many = select_snapshots(
        list(range(1000, 301000, 1000)), {s: s / 10 for s in range(1000, 301000, 1000)}, 0
    )
    assert len(many[2]) == 10 and many[2][-1] == many[1] == 100000
    # upto: the run as if it had ended at 15000 (expert 15000, medium closest to 500).
    expert, medium, replay, full = select_snapshots(steps, returns, 5000, upto=15500)
    assert (expert, medium, replay[-1], full[-1]) == (15000, 6000, 6000, 15000)


# ------------------------------------------------------------------------------------------
# A debug-sized online run, its resume, and the behaviour pipeline built on its snapshots


@pytest.mark.slow
def test_debug_run_writes_metrics_snapshots_and_result(gem_debug_run):
    logdir = gem_debug_run.logdir
    lines = [json.loads(x) for x in (logdir / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "train/critic_loss" in x]
    assert train and all(np.isfinite(x["train/critic_loss"]) for x in train)
    assert any("train/memory_return" in x for x in train)
    assert any("train/episode_return" in x for x in lines)
    assert sorted(p.name for p in (logdir / "snapshots").iterdir()) == [
        f"actor_{s:08d}.npz" for s in (100, 200, 300, 400)
    ]
    result = json.loads((logdir / "result.json").read_text())
    assert result["step"] == 400


@pytest.mark.slow
def test_resume_mid_episode_ends_with_the_same_state(gem_debug_run, tmp_path):
    straight = gem_debug_run.logdir
    # At step 300 a training episode is in progress (debug hopper episodes last ~20-100 steps
    # and step 300 is not an episode end), so the resume must replay it in the simulator.
    assert int(final_state(straight, 300)[".counters['episode_steps']"]) > 0
    interrupted = tmp_path / "interrupted"
    copy_as_killed_after(straight, interrupted, 300)
    proc = cli(gem_debug_run.train_args(interrupted))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step 300" in proc.stdout
    # The checkpoint is the whole RunState: agent (memory included), replay, counters, root key.
    state = final_state(straight, 400)
    assert {".agent.memory", ".replay.cursor", ".counters['step']", ".rng"} <= set(state)
    assert_same_final_state(straight, interrupted, 400)


@pytest.mark.slow
def test_export_and_collect_are_deterministic(gem_debug_run, tmp_path, monkeypatch):
    from envs.datasets import export, trained_policies
    from envs.datasets.collect import collect_task, union_part_seeds

    logdir = gem_debug_run.logdir
    manifest = export.export(logdir, "hopper", tmp_path, "test")
    assert manifest["expert"]["env_step"] == 400 and manifest["medium"]["env_step"] == 300
    assert manifest["medium_replay"]["random_steps"] == 200
    monkeypatch.setattr(trained_policies, "POLICY_DIR", tmp_path)
    task = envs.get_task("hopper")
    for quality in ("medium", "expert", "medium-replay", "medium-expert"):
        a = collect_task(task, quality, 301, seed=3, progress=False)
        b = collect_task(task, quality, 301, seed=3, progress=False)
        assert len(a["rewards"]) == 301
        for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{quality} {key}")
    # medium-expert = the medium dataset of the seed, then an expert half with its own seed.
    union = collect_task(task, "medium-expert", 301, seed=3, progress=False)
    medium = collect_task(task, "medium", 151, seed=3, progress=False)
    expert_seed = union_part_seeds(3, 2)[1]
    assert expert_seed != 3
    expert = collect_task(task, "expert", 150, seed=expert_seed, progress=False)
    np.testing.assert_array_equal(union["actions"][:151], medium["actions"])
    np.testing.assert_array_equal(union["actions"][151:], expert["actions"])


@pytest.mark.slow
def test_medium_replay_follows_the_training_shares(gem_debug_run, tmp_path):
    from envs.datasets import export, trained_policies

    logdir = gem_debug_run.logdir
    export.export(logdir, "hopper", tmp_path, "test")
    manifest = trained_policies.read_manifest("hopper", tmp_path)
    behaviour = trained_policies.ReplayBehaviour(tmp_path / "hopper", manifest, 3)
    behaviour.prepare(600)  # training: random 200 steps, then snapshot 300 (steps 200..300]
    assert behaviour.bounds == [400, 600]
    rng = np.random.default_rng(0)
    obs = np.zeros(11, np.float32)
    actions = np.array([behaviour(obs, rng) for _ in range(600)])
    policy = trained_policies.NumpyActor.load(tmp_path / "hopper" / "actor_00000300.npz")(obs)
    # The snapshot's actions sit within the exploration noise of its output.
    assert np.abs(actions[400:] - policy).max() < 0.6
    assert np.abs(actions[:400].mean(0)).max() < 0.1  # uniform in [-1, 1]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(p.name for p in POLICY_DIR.iterdir() if p.is_dir()))
def test_committed_policies_reproduce_their_fingerprints(task):
    """The committed snapshots exist, and short collections from them give the recorded rewards
    (so a changed file, simulator version or collector is caught)."""
    from envs.datasets import export, trained_policies

    manifest = trained_policies.read_manifest(task)
    folder = trained_policies.POLICY_DIR / task
    files = {manifest["expert"]["file"], manifest["medium"]["file"]}
    for section in ("medium_replay", "full_replay"):
        files |= {seg["file"] for seg in manifest.get(section, {}).get("segments", [])}
    assert all((folder / f).is_file() for f in files)
    assert manifest["medium_replay"]["segments"][-1]["file"] == manifest["medium"]["file"]
    got = export.fingerprint(task, trained_policies.POLICY_DIR)
    for quality, expected in manifest["fingerprint"]["reward_sums"].items():
        assert got["reward_sums"][quality] == pytest.approx(expected, rel=1e-3), quality
