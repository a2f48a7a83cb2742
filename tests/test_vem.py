"""VEM (agent/vem): losses against numpy/scipy references, the memory refresh against the shared
kernel, the phase schedule through the runner's chunk programs, and run.py end to end (debug
hopper run + exact resume, a D4RL-format AntMaze file).

The agent is built once per module on a small synthetic dataset, as the runner builds it (spec,
context with the dataset's statistics and size, replay in the runner's layout).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from agent import checkpoint, memory
from agent import replay as replay_lib
from agent.config import ConfigError, load_config
from agent.distributions import gaussian_log_prob
from agent.networks import polyak
from agent.observations import STATE, observation_stats, state_spec
from agent.programs import Programs
from agent.protocol import EVAL, Context, Spec
from agent.runner.rundir import CHECKPOINT_DIR
from agent.runner.sources import dataset_arrays
from agent.vem import VEMAgent, losses
from agent.vem.agent import JOINT, POLICY, VALUE
from agent.vem.networks import log_std_from_logits
from envs.datasets.offline_data import OfflineData
from tests.conftest import cli
from tests.resume import assert_same_final_state, copy_as_killed_after, final_state

OBS, ACT = 5, 3
SPEC = Spec(state_spec(OBS), ACT)

# ---------------------------------------------------------------------------------- losses


def init_jitted(agent, seed: int):
    """agent.init as one compiled program (op by op it compiles hundreds of small kernels)."""
    return jax.jit(lambda key: agent.init(key, SPEC))(jax.random.PRNGKey(seed))


@pytest.mark.parametrize("tau", [0.3, 0.7, 0.9])
def test_expectile_forms_match_their_definitions(tau):
    u = np.random.default_rng(0).normal(size=(64, 4)) * 3
    paper = np.abs(tau - (u < 0)) * u**2
    code = np.where(u > 0, tau**2, (1 - tau) ** 2) * u**2
    np.testing.assert_allclose(losses.expectile(jnp.asarray(u), tau, "paper"), paper, rtol=1e-6)
    np.testing.assert_allclose(losses.expectile(jnp.asarray(u), tau, "code"), code, rtol=1e-6)
    with pytest.raises(ValueError):
        losses.expectile(jnp.asarray(u), tau, "other")


def test_paper_expectile_minimiser_is_the_tau_expectile():
    """Minimising E[ell_tau(R - v)] over a constant v gives the tau-expectile of R."""
    returns = np.random.default_rng(1).exponential(size=2000)
    grid = np.linspace(returns.min(), returns.max(), 4001)
    u = jnp.asarray(returns[None, :] - grid[:, None])
    v_star = grid[int(jnp.argmin(jnp.mean(losses.expectile_paper(u, 0.8), axis=1)))]
    # The tau-expectile solves tau E[(R - v)_+] = (1 - tau) E[(v - R)_+].
    balance = 0.8 * np.maximum(returns - v_star, 0).mean()
    balance -= 0.2 * np.maximum(v_star - returns, 0).mean()
    assert abs(balance) < 2e-3


def test_value_loss_pairs_heads_with_memory_columns():
    rng = np.random.default_rng(2)
    values, returns = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    targets = returns[:, [0, 0, 1, 1]]  # heads 0, 1 <- R^(1); heads 2, 3 <- R^(2)
    u = targets - values
    expected = np.mean(np.abs(0.7 - (u < 0)) * u**2)
    got = losses.value_loss(jnp.asarray(values), jnp.asarray(returns), 0.7, "paper")
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("temperature", [0.5, 3.0, 100.0])
def test_advantage_weights_are_batch_softmax_with_mean_one(temperature):
    rng = np.random.default_rng(3)
    returns, values = rng.normal(size=(128, 2)) * 5, rng.normal(size=(128, 4)) * 5
    adv = returns.min(1) - values.mean(1)
    np.testing.assert_allclose(
        losses.advantages(jnp.asarray(returns), jnp.asarray(values)), adv, rtol=1e-5, atol=1e-5
    )
    z = adv / temperature
    expected = len(adv) * np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    weights = np.asarray(losses.advantage_weights(jnp.asarray(adv), temperature))
    np.testing.assert_allclose(weights, expected, rtol=1e-4)
    assert abs(weights.mean() - 1.0) < 1e-5


def test_gaussian_log_prob_and_log_std_range():
    rng = np.random.default_rng(4)
    actions, mean = rng.uniform(-1, 1, (32, ACT)), np.tanh(rng.normal(size=(32, ACT)))
    theta = rng.normal(size=ACT) * 2
    log_std = np.asarray(log_std_from_logits(jnp.asarray(theta)))
    np.testing.assert_allclose(log_std, -6 + 6 / (1 + np.exp(-theta)), rtol=1e-5)
    expected = stats.norm.logpdf(actions, mean, np.exp(log_std)).sum(-1)
    got = gaussian_log_prob(jnp.asarray(actions), jnp.asarray(mean), jnp.asarray(log_std))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    bounds = log_std_from_logits(jnp.array([-50.0, 50.0]))
    np.testing.assert_allclose(bounds, [-6.0, 0.0], atol=1e-6)


def test_target_update_rate():
    online, target = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
    rate = 1 - 0.995**200
    np.testing.assert_allclose(polyak(online, target, rate)["w"], rate, rtol=1e-6)


# ---------------------------------------------------------------------------- memory refresh


def synthetic_data(seed: int = 0, lengths=(7, 1, 12, 5, 9, 3)) -> OfflineData:
    """Trajectories of the given lengths, alternately ending in a terminal and a timeout."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    ends = np.cumsum(lengths) - 1
    terminals, timeouts, episode_ends = (np.zeros(n, np.float32) for _ in range(3))
    episode_ends[ends] = 1
    terminals[ends[0::2]] = 1
    timeouts[ends[1::2]] = 1
    return OfflineData(
        observations=rng.normal(size=(n, OBS)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=rng.normal(size=(n, OBS)).astype(np.float32),
        terminals=terminals,
        timeouts=timeouts,
        episode_ends=episode_ends,
    )


def context_of(data: OfflineData) -> Context:
    """What the runner's offline context gives VEM: the dataset's statistics and size."""
    mean, std = observation_stats({STATE: data.observations}, SPEC)
    return Context(obs_mean=mean, obs_std=std, data_size=len(data))


def make_agent(data: OfflineData, *overrides: str) -> VEMAgent:
    # refresh_chunk 8 does not divide N = 37: exercises the padded last chunk.
    cfg = load_config(
        ["vem_hopper", "debug"],
        ["train.updates_per_call=10", "vem.memory_every=20", "vem.refresh_chunk=8", *overrides],
    )
    return VEMAgent(cfg, SPEC, context_of(data))


def replay_of(data: OfflineData) -> replay_lib.Replay:
    """The dataset as the runner places it on the device."""
    return replay_lib.full(dataset_arrays(data))


@pytest.fixture(scope="module")
def setup():
    data = synthetic_data()
    agent = make_agent(data)
    return agent, data, replay_of(data), init_jitted(agent, 0)


def train_chunk(agent: VEMAgent, programs: Programs, state, replay, seed: int = 0):
    """One chunk as the runner's offline loop runs it: the phase of the state's step, at most
    train.updates_per_call steps, cut where the phase or the run ends -> (state, metrics)."""
    t = agent.cfg.train
    step = int(state.step)
    phase = agent.phase(step)
    length = min(t.updates_per_call, t.steps - step)
    length = next((i for i in range(1, length) if agent.phase(step + i) != phase), length)
    return programs.chunk(phase, length)(state, replay, jax.random.PRNGKey(seed), step)


def kernel_reference(agent: VEMAgent, params, state, data: OfflineData, form="twin", boot=True):
    """The shared kernel applied to the four heads evaluated directly on all next observations."""
    heads = agent.value_net.apply(params, data.next_observations, state.obs_mean, state.obs_std)
    heads = np.asarray(heads)
    pairs = np.stack([heads[:, :2].min(1), heads[:, 2:].min(1)], 1)
    kernel = memory.memory_returns_twin if form == "twin" else memory.memory_returns_max
    out = kernel(
        data.rewards,
        pairs,
        data.terminals,
        data.episode_ends,
        agent.v.gamma,
        bootstrap_timeouts=boot,
    )
    return np.asarray(out)


def perturbed(params, seed: int):
    """Distinct target parameters, so the test can tell targets from online heads."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    noise = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, noise)


def test_agent_is_built_from_the_context(setup):
    """N (the memory's rows) and the observation normaliser come from the runner's context."""
    agent, data, _, state = setup
    assert agent.num_rows == len(data) == 37 and state.memory.shape == (37, 2)
    mean, std = observation_stats({STATE: data.observations}, SPEC)
    np.testing.assert_allclose(state.obs_mean, data.observations.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(state.obs_mean, mean)
    np.testing.assert_array_equal(state.obs_std, std)
    off = make_agent(data, "vem.obs_norm=false").init(jax.random.PRNGKey(0), SPEC)
    np.testing.assert_array_equal(off.obs_mean, np.zeros(OBS))
    np.testing.assert_array_equal(off.obs_std, np.ones(OBS))


def test_refresh_equals_kernel_on_target_heads(setup):
    agent, data, replay, state = setup
    state = state._replace(target_params=perturbed(state.value_params, 1))
    got = np.asarray(jax.jit(agent.refresh)(state, replay))
    expected = kernel_reference(agent, state.target_params, state, data)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    online = kernel_reference(agent, state.value_params, state, data)
    assert not np.allclose(got, online)


@pytest.mark.parametrize(("form", "boot"), [("max", True), ("twin", False)])
def test_refresh_options_reach_the_kernel(form, boot):
    data = synthetic_data(5)
    agent = make_agent(data, f"vem.memory_form={form}", f"vem.bootstrap_timeouts={boot}")
    state = init_jitted(agent, 1)
    got = np.asarray(jax.jit(agent.refresh)(state, replay_of(data)))
    expected = kernel_reference(agent, state.target_params, state, data, form, boot)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_train_chunk_refreshes_at_step_zero_and_at_the_phase_switch(setup):
    agent, data, replay, state = setup
    programs = Programs(agent)
    value_steps = agent.v.value_steps
    assert agent.phase(0) == agent.phase(value_steps - 1) == VALUE
    assert agent.phase(value_steps) == POLICY
    initial_targets = state.target_params
    state, metrics = train_chunk(agent, programs, state, replay)
    assert "train/value_loss" in metrics and "train/actor_loss" not in metrics
    np.testing.assert_allclose(
        state.memory, kernel_reference(agent, initial_targets, state, data), rtol=1e-5, atol=1e-5
    )
    while int(state.step) < value_steps:
        state, _ = train_chunk(agent, programs, state, replay)
    assert int(state.step) == value_steps  # the runner's chunks stop at the phase switch
    online = state.value_params
    state, metrics = train_chunk(agent, programs, state, replay)
    assert "train/actor_loss" in metrics and "train/value_loss" not in metrics
    # Policy phase: V frozen, targets = copies of the online heads, memory refreshed once with them.
    jax.tree.map(np.testing.assert_array_equal, state.value_params, online)
    jax.tree.map(np.testing.assert_array_equal, state.target_params, online)
    expected = kernel_reference(agent, online, state, data)
    np.testing.assert_allclose(state.memory, expected, rtol=1e-5, atol=1e-5)
    # The deterministic policy (evaluation) is the Gaussian mean, inside [-1, 1].
    obs = {STATE: data.observations[:4]}
    carry, action = programs.policy(state, None, obs, EVAL, jax.random.PRNGKey(0))
    action = np.asarray(action)
    mean, _ = agent.policy_net.apply(
        state.policy_params, data.observations[:4], state.obs_mean, state.obs_std
    )
    assert carry is None and action.shape == (4, ACT) and np.all(np.abs(action) <= 1)
    np.testing.assert_allclose(action, mean, rtol=1e-6, atol=1e-6)


def test_bad_vem_settings_are_config_errors():
    data = synthetic_data()
    for override in ("vem.value_steps=400", "vem.schedule=other", "vem.expectile=1.5"):
        with pytest.raises(ConfigError):
            make_agent(data, override)


def test_interleaved_schedule_updates_value_and_policy_each_step():
    data = synthetic_data(6)
    agent = make_agent(data, "vem.schedule=interleaved")
    assert agent.phase(0) == agent.phase(agent.cfg.train.steps - 1) == JOINT
    replay = replay_of(data)
    state = init_jitted(agent, 2)
    after, metrics = train_chunk(agent, Programs(agent), state, replay)
    assert {"train/value_loss", "train/actor_loss"} <= set(metrics)
    assert int(after.step) == agent.cfg.train.updates_per_call
    for name in ("value_params", "policy_params"):
        before_leaf = jax.tree.leaves(getattr(state, name))[0]
        assert not np.array_equal(before_leaf, jax.tree.leaves(getattr(after, name))[0])


# ------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_debug_run_via_run_py(vem_debug_run):
    """The session's VEM debug run (maze2d-umaze, every checkpoint kept)."""
    logdir, result = vem_debug_run.logdir, vem_debug_run.result
    assert result["step"] == 400 and np.isfinite(result["eval/normalized_score"])
    lines = [json.loads(x) for x in (logdir / "metrics.jsonl").read_text().splitlines()]
    assert any("train/value_loss" in x for x in lines)
    assert any("train/actor_loss" in x for x in lines)
    assert checkpoint.checkpoint_steps(logdir / CHECKPOINT_DIR) == [100, 200, 300, 400]
    # `run.py eval` rebuilds the agent without data: the memory's row count comes from the
    # run's context.json.
    facts = json.loads((logdir / "context.json").read_text())
    assert final_state(logdir, 400)[".agent.memory"].shape == (facts["data_size"], 2)
    evaluated = cli(["eval", "--logdir", str(logdir), "--episodes", "1"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "normalized score" in evaluated.stdout


@pytest.mark.slow
def test_resume_mid_value_phase_ends_with_the_same_state(vem_debug_run, tmp_path):
    straight = vem_debug_run.logdir
    # What a kill between the checkpoints of steps 100 and 200 leaves behind: the resumed run
    # redoes a refresh at step 100, the phase switch at 200 and the whole policy phase.
    interrupted = tmp_path / "interrupted"
    copy_as_killed_after(straight, interrupted, 100)
    proc = cli(vem_debug_run.train_args(interrupted))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step 100" in proc.stdout
    assert ".agent.memory" in final_state(straight, 400)
    assert_same_final_state(straight, interrupted, 400)


@pytest.mark.slow
def test_antmaze_d4rl_file(tmp_path):
    """A D4RL-layout AntMaze file (no next_observations, as D4RL's) recorded in the real env."""
    from envs.datasets.collect import collect
    from envs.datasets.d4rl_hdf5 import write_d4rl_hdf5

    raw = collect("antmaze-umaze", "random", 2000, seed=0, progress=False)
    del raw["next_observations"]
    path = write_d4rl_hdf5(tmp_path / "antmaze-umaze-random.hdf5", raw)
    logdir = tmp_path / "run"
    proc = cli(
        [
            "train",
            "--config",
            "vem_antmaze_umaze",
            "--config",
            "debug",
            "--set",
            f"dataset.path={path}",
            "--set",
            "eval.video_every=0",
            "--set",
            "eval.final_episodes=1",
            "--logdir",
            str(logdir),
            "--quiet",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["step"] == 400 and np.isfinite(result["eval/return"])
    memory_rows = final_state(logdir, 400)[".agent.memory"]
    # D4RL pairing drops each timeout step (and the last), so N < 2000.
    assert memory_rows.shape[1] == 2 and memory_rows.shape[0] < 2000
    assert np.isfinite(memory_rows).all()
