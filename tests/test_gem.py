"""GEM: losses against their formulas, the twin pairing, the memory refresh over a wrapped ring
buffer against brute force, a debug online run with exact resume, and the behaviour-policy
pipeline (snapshots -> export -> deterministic collection)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from agent.config import ConfigError, load_config
from agent.gem import GEMAgent, losses
from agent.gem.networks import actor
from agent.replay import add
from tests.resume import assert_same_final_state, copy_as_killed_after, final_state
from tests.test_memory import brute_force

ROOT = Path(__file__).resolve().parents[1]


def run_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.2])
def test_asymmetric_loss_matches_its_two_branches(alpha):
    rng = np.random.default_rng(0)
    r, q = rng.normal(size=200), rng.normal(size=200)
    expected = np.where(q > r, (q - r) ** 2 / alpha, alpha * (r - q) ** 2)
    np.testing.assert_allclose(losses.asymmetric_loss(jnp.asarray(r - q), alpha), expected, 1e-5)
    if alpha == 0.5:  # over-estimation costs 4x more than under-estimation by the same amount
        assert float(losses.asymmetric_loss(jnp.float32(-1.0), 0.5)) == pytest.approx(2.0)
        assert float(losses.asymmetric_loss(jnp.float32(1.0), 0.5)) == pytest.approx(0.5)


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

    # Only the twin pairing lets critic 1's gradient ignore R^B.
    def loss_of_returns(r, pairing):
        return losses.critic_loss(jnp.asarray(q), r, 0.5, pairing)

    g_twin = jax.grad(lambda qq: losses.critic_loss(qq, jnp.asarray(ret), 0.5, "twin"))(
        jnp.asarray(q)
    )
    assert np.all(np.asarray(g_twin) != 0)
    assert loss_of_returns(jnp.asarray(ret), "twin") == pytest.approx(twin, rel=1e-5)


def test_twin_values_and_one_step_returns():
    q = jnp.array([[1.0, 2.0, 5.0, 3.0], [0.0, -1.0, 2.0, 2.5]])
    np.testing.assert_array_equal(losses.twin_values(q), [[1.0, 3.0], [-1.0, 2.0]])
    out = losses.one_step_returns(
        jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]), jnp.array([[10.0, 20.0], [30.0, 40.0]]), 0.9
    )
    np.testing.assert_allclose(out, [[10.0, 19.0], [2.0, 2.0]])  # a terminal never bootstraps


def test_smoothed_actions_are_clipped():
    a = jnp.array([[0.95, -0.95, 0.0]] * 1000)
    out = np.asarray(losses.smoothed_actions(a, jax.random.PRNGKey(0), 0.2, 0.5))
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert np.all(np.abs(out - np.asarray(a)) <= 0.5 + 1e-6)
    assert 0.1 < np.std(out[:, 2]) < 0.3


@pytest.fixture(scope="module")
def small_agent():
    cfg = load_config(
        ["gem_hopper", "debug"],
        ["gem.capacity=64", "gem.target_noise=0.0", "gem.refresh_chunk=24"],
    )
    return GEMAgent(cfg, 11, 3), cfg


def _rows(rng, lengths_and_terminal):
    rows = {k: [] for k in ("observations", "actions", "rewards", "next_observations")}
    rows.update(masks=[], timeouts=[], episode_ends=[])
    for length, terminal in lengths_and_terminal:
        for t in range(length):
            last = t == length - 1
            rows["observations"].append(rng.normal(size=11))
            rows["actions"].append(rng.uniform(-1, 1, 3))
            rows["rewards"].append(rng.normal())
            rows["next_observations"].append(rng.normal(size=11))
            rows["masks"].append(0.0 if last and terminal else 1.0)
            rows["timeouts"].append(1.0 if last and not terminal else 0.0)
            rows["episode_ends"].append(1.0 if last else 0.0)
    return {k: np.asarray(v, np.float32) for k, v in rows.items()}


def test_memory_refresh_over_a_wrapped_ring_buffer_matches_brute_force(small_agent):
    agent, cfg = small_agent
    rng = np.random.default_rng(3)
    # 90 rows into 64: the oldest episode is cut, terminal/truncated/length-1 episodes, and the
    # newest episode is still in progress (its last row is not an end).
    episodes = [(20, True), (1, False), (15, False), (1, True), (30, True), (12, False), (11, None)]
    rows = _rows(rng, episodes)
    rows["episode_ends"][-1] = rows["timeouts"][-1] = 0.0
    rows["masks"][-1] = 1.0
    state = agent.init_state(jax.random.PRNGKey(0))
    state = state._replace(replay=add(state.replay, rows))
    assert int(state.replay.cursor) == 90 - 64
    memory = np.asarray(agent.refresh_memory(state, jax.random.PRNGKey(1)))

    kept = {k: v[-64:] for k, v in rows.items()}  # oldest first
    values = np.asarray(
        agent.target_twin_values(state, jnp.asarray(kept["next_observations"]), jax.random.key(2))
    )
    expected = brute_force(
        kept["rewards"], values, 1.0 - kept["masks"], kept["episode_ends"], 0.99, True, "twin"
    )
    got = np.roll(memory, -int(state.replay.cursor), axis=0)  # storage -> oldest first
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_partly_filled_memory_ignores_empty_rows(small_agent):
    agent, _ = small_agent
    rows = _rows(np.random.default_rng(4), [(10, True), (7, False)])
    state = agent.init_state(jax.random.PRNGKey(0))
    state = state._replace(replay=add(state.replay, rows))
    memory = np.asarray(agent.refresh_memory(state, jax.random.PRNGKey(1)))
    values = np.asarray(
        agent.target_twin_values(state, jnp.asarray(rows["next_observations"]), jax.random.key(2))
    )
    expected = brute_force(
        rows["rewards"], values, 1.0 - rows["masks"], rows["episode_ends"], 0.99, True, "twin"
    )
    np.testing.assert_allclose(memory[:17], expected, rtol=1e-4, atol=1e-4)


def test_td3_switch_uses_one_step_targets_and_no_memory():
    cfg = load_config(["td3_hopper", "debug"], ["gem.target_noise=0.0"])
    agent = GEMAgent(cfg, 11, 3)
    state = agent.init_state(jax.random.PRNGKey(0))
    rows = _rows(np.random.default_rng(5), [(30, True), (20, False)])
    batch = {k: jnp.asarray(v) for k, v in rows.items()}
    (_, _), metrics = agent.critic_update(state, batch, jax.random.PRNGKey(0))
    next_q = agent.target_twin_values(state, batch["next_observations"], jax.random.PRNGKey(0))
    expected = rows["rewards"][:, None] + 0.99 * rows["masks"][:, None] * np.asarray(next_q)
    np.testing.assert_allclose(metrics["train/target_return"], expected.mean(), rtol=1e-5)
    state, out = agent.observe(state, rows, learn=True)
    assert "train/memory_return" not in out
    assert not np.any(np.asarray(state.memory))


def test_config_errors():
    with pytest.raises(ConfigError, match="gem.pairing"):
        GEMAgent(load_config(["gem_hopper"], ["gem.pairing=mixed"]), 11, 3)
    with pytest.raises(ConfigError, match="learning_starts"):
        GEMAgent(load_config(["gem_hopper"], ["gem.learning_starts=150"]), 11, 3)


def test_numpy_actor_matches_the_haiku_actor():
    from envs.trained_policies import NumpyActor

    net = actor([16, 8], 3)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 11)))
    params = jax.tree.map(
        lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x.shape), params
    )
    flat = {f"{m}/{n}": np.asarray(v) for m, leaves in params.items() for n, v in leaves.items()}
    obs = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    np.testing.assert_allclose(NumpyActor(flat)(obs), net.apply(params, obs), atol=1e-5)
    assert isinstance(hk.data_structures.to_haiku_dict(params), dict)


def test_select_snapshots():
    from envs.trained_policies import select_snapshots

    steps = list(range(1000, 31000, 1000))
    returns = {s: s / 10 for s in steps}  # expert 3000 at 30000; a third = 1000 at 10000
    expert, medium, replay = select_snapshots(steps, returns, learning_starts=5000)
    assert expert == 30000 and medium == 10000
    assert replay == [6000, 7000, 8000, 9000, 10000]
    many = select_snapshots(
        list(range(1000, 301000, 1000)), {s: s / 10 for s in range(1000, 301000, 1000)}, 0
    )
    assert len(many[2]) == 10 and many[2][-1] == many[1] == 100000


# ------------------------------------------------------------------------------------------
# A debug-sized online run, its resume, and the behaviour pipeline built on its snapshots


@pytest.fixture(scope="module")
def gem_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gem_hopper")
    args = [
        "train",
        "--config",
        "gem_hopper",
        "--config",
        "debug",
        "--set",
        "train.keep_checkpoints=10",
        "--set",
        "train.eval_every=100",
        "--set",
        "gem.snapshot_every=100",
        "--quiet",
    ]
    logdir = root / "straight"
    proc = run_py(*args, "--logdir", str(logdir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return args, logdir


def test_debug_run_writes_metrics_snapshots_and_result(gem_run):
    _, logdir = gem_run
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


def test_resume_mid_episode_ends_with_the_same_state(gem_run, tmp_path):
    args, straight = gem_run
    # At step 300 a training episode is in progress (debug hopper episodes last ~20-100 steps
    # and step 300 is not an episode end), so the resume must replay it in the simulator.
    assert int(final_state(straight, 300)[".loop['episode_steps']"]) > 0
    interrupted = tmp_path / "interrupted"
    copy_as_killed_after(straight, interrupted, 300)
    proc = run_py(*args, "--logdir", str(interrupted))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step 300" in proc.stdout
    assert_same_final_state(straight, interrupted, 400)


def test_export_and_collect_are_deterministic(gem_run, tmp_path, monkeypatch):
    from envs import trained_policies
    from envs.collect import collect_task

    _, logdir = gem_run
    manifest = trained_policies.export(logdir, "hopper", tmp_path, "test")
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
    union = collect_task(task, "medium-expert", 301, seed=3, progress=False)
    medium = collect_task(task, "medium", 151, seed=3, progress=False)
    expert = collect_task(task, "expert", 150, seed=3, progress=False)
    np.testing.assert_array_equal(union["actions"][:151], medium["actions"])
    np.testing.assert_array_equal(union["actions"][151:], expert["actions"])


def test_medium_replay_follows_the_training_shares(gem_run, tmp_path):
    from envs import trained_policies

    _, logdir = gem_run
    trained_policies.export(logdir, "hopper", tmp_path, "test")
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


@pytest.mark.parametrize("task", ["hopper", "walker2d", "halfcheetah"])
def test_committed_policies_reproduce_their_fingerprints(task):
    """The committed snapshots exist, and short collections from them give the recorded rewards
    (so a changed file, simulator version or collector is caught)."""
    from envs import trained_policies

    manifest = trained_policies.read_manifest(task)
    folder = trained_policies.POLICY_DIR / task
    files = {manifest["expert"]["file"], manifest["medium"]["file"]}
    files |= {seg["file"] for seg in manifest["medium_replay"]["segments"]}
    assert all((folder / f).is_file() for f in files)
    assert manifest["medium_replay"]["segments"][-1]["file"] == manifest["medium"]["file"]
    got = trained_policies.fingerprint(task, trained_policies.POLICY_DIR)
    for quality, expected in manifest["fingerprint"]["reward_sums"].items():
        assert got["reward_sums"][quality] == pytest.approx(expected, rel=1e-3), quality
