"""The LEQ agent on the shared stack: the EMA copy at the FQE -> LEQ switch, ablations and config
errors on synthetic data (fast); debug runs with exact resume, world-model reuse from a run's
folder and a D4RL-format AntMaze file (slow: simulators and whole runs).
"""

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import envs
from agent import checkpoint
from agent.config import ConfigError, load_config
from agent.methods import agent_class
from agent.protocol import Context
from agent.runner.build import fresh_run
from agent.runner.loop import train
from agent.runner.rundir import WORLD_MODEL_DIR
from agent.runner.schedule import check_schedule
from agent.runner.sources import dataset_arrays, offline_context, place_replay, task_spec
from agent.runner.world_models import build_world_model
from envs.datasets import load_dataset
from envs.datasets.collect import collect
from envs.datasets.d4rl_hdf5 import write_d4rl_hdf5
from envs.datasets.offline_data import OfflineData
from tests.conftest import cli, leaves_equal, run_chunk
from tests.resume import assert_same_final_state, copy_as_killed_after, final_state


def _cfg(data_dir, *overrides):
    sets = [f"dataset.dir={data_dir}", "eval.video_every=0", *overrides]
    return load_config(["leq_hopper", "debug"], sets)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# ------------------------------------------------------------------ synthetic data (fast) ----


def synthetic_data(obs_dim: int, act_dim: int, n: int = 2000, seed: int = 0) -> OfflineData:
    """Random transitions, trajectories of 100 steps; column 0 near 1.25 (a healthy hopper)."""
    rng = np.random.default_rng(seed)
    obs = 0.05 * rng.normal(size=(n, obs_dim))
    obs[:, 0] += 1.25
    ends = np.zeros(n, np.float32)
    ends[99::100] = 1.0
    f32 = lambda x: np.asarray(x, np.float32)
    return OfflineData(
        observations=f32(obs),
        actions=f32(rng.uniform(-1, 1, (n, act_dim))),
        rewards=f32(rng.normal(size=n)),
        next_observations=f32(obs + 0.01 * rng.normal(size=obs.shape)),
        terminals=np.zeros(n, np.float32),
        timeouts=ends,
        episode_ends=ends,
    )


def synthetic_parts(names: list[str], overrides: list[str]):
    """(cfg, agent, replay, run) built with the runner's own pieces on synthetic data, with an
    untrained world model (no simulator, no model fitting)."""
    cfg = load_config(names, overrides)
    task = envs.get_task(cfg.task)
    spec = task_spec(task)
    data = synthetic_data(task.obs_dim, task.act_dim)
    context = offline_context(task, spec, data)
    world = build_world_model(cfg, spec, context)
    context = dataclasses.replace(
        context, world=world, world_params=world.init(jax.random.PRNGKey(cfg.seed))
    )
    agent = agent_class(cfg.method)(cfg, spec, context)
    replay = place_replay(cfg, dataset_arrays(data), agent.device_replay)
    return cfg, agent, replay, fresh_run(cfg, agent, spec)


@pytest.mark.slow  # compiles three LEQ programs (~15 s)
def test_ema_copy_is_the_fqe_critic_at_the_leq_switch():
    """At the FQE -> LEQ switch the critic's EMA copy becomes the trained FQE critic (the first
    LEQ chunk's begin_chunk); before the switch it trails the critic, and later LEQ chunks leave
    it to the critic step's own EMA update."""
    cfg, agent, replay, run = synthetic_parts(["default", "debug"], [])
    bc, fqe = cfg.leq.bc_steps, cfg.leq.fqe_steps
    switch = bc + fqe
    assert [agent.phase(s) for s in (0, bc - 1, bc, switch - 1, switch)] == [
        "bc", "bc", "fqe", "fqe", "leq"
    ]  # fmt: skip
    state, _ = run_chunk(agent, run.agent, replay, "bc", bc, step=0)
    state, metrics = run_chunk(agent, state, replay, "fqe", fqe, step=bc)
    assert int(state.step) == switch and np.isfinite(float(metrics["pretrain/fqe_loss"]))
    fqe_critic, fqe_ema = state.ac.critic, state.ac.ema
    assert not leaves_equal(fqe_ema, fqe_critic)  # FQE's EMA trails its critic

    begin = jax.jit(agent.begin_chunk, static_argnums=0)
    switched, begin_metrics = begin("leq", state, replay, jax.random.PRNGKey(1))
    assert leaves_equal(switched.ac.ema, fqe_critic)
    assert leaves_equal(switched.ac.critic, fqe_critic)
    assert leaves_equal(switched.ac.actor, state.ac.actor)
    expansion = cfg.leq.rollout_length * cfg.leq.rollout_batch  # D_model expanded at the start
    assert int(begin_metrics["train/model_buffer_size"]) == expansion

    # Through the compiled chunk: one LEQ step from the switch moves the EMA from the FQE critic.
    after, _ = run_chunk(agent, state, replay, "leq", 1, step=switch)
    rate = cfg.leq.ema_rate
    from_critic = optax.incremental_update(after.ac.critic, fqe_critic, rate)
    from_ema = optax.incremental_update(after.ac.critic, fqe_ema, rate)
    diffs = [
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(jax.tree.leaves(from_critic), jax.tree.leaves(from_ema), strict=True)
    ]
    assert max(diffs) > 1e-4  # the check below tells the two behaviours apart
    for got, want in zip(jax.tree.leaves(after.ac.ema), jax.tree.leaves(from_critic), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    # A later LEQ chunk does not touch the EMA copy in begin_chunk.
    assert int(after.step) == switch + 1
    later, _ = begin("leq", after, replay, jax.random.PRNGKey(2))
    assert leaves_equal(later.ac.ema, after.ac.ema)
    assert not leaves_equal(later.ac.ema, later.ac.critic)


@pytest.mark.slow  # one LEQ compile per ablation (~10 s each)
@pytest.mark.parametrize(
    "overrides",
    [
        ["leq.policy_objective=multi_step", "leq.critic_target=multi_step"],
        ["leq.policy_objective=one_step", "leq.critic_target=one_step"],
        ["leq.expectile=false"],
    ],
    ids=["multi_step", "one_step", "no_expectile"],
)
def test_ablation_switches_train(overrides):
    cfg, agent, replay, run = synthetic_parts(
        ["leq_hopper", "debug"], [*overrides, "leq.pretrain=false"]
    )
    assert agent.phase(0) == "leq"
    length = cfg.train.updates_per_call
    state, metrics = run_chunk(agent, run.agent, replay, "leq", length)
    assert int(state.step) == length
    assert np.isfinite(float(metrics["train/critic_loss"]))
    assert np.isfinite(float(metrics["train/actor_loss"]))
    assert int(metrics["train/model_buffer_size"]) == cfg.leq.rollout_length * cfg.leq.rollout_batch


def _construct(cfg):
    """The world model and the agent, built in the runner's order (no data)."""
    task = envs.get_task(cfg.task)
    spec = task_spec(task)
    context = Context(termination_fn=task.termination_fn)
    world = build_world_model(cfg, spec, context)
    return agent_class(cfg.method)(cfg, spec, dataclasses.replace(context, world=world))


def test_bad_leq_settings_are_config_errors(data_dir):
    for override, fragment in (
        ("leq.policy_objective=two_step", "leq.policy_objective='two_step' is not one of"),
        ("leq.rollout_freq=30", "leq.rollout_freq=30 must be a multiple"),
        ("leq.actor_lr_schedule=linear", "leq.actor_lr_schedule='linear' is not one of"),
        ("train.steps=200", "leaves no LEQ steps"),
        ("world_model.hidden=[8]", "world_model: weight_decays needs 2 entries"),
    ):
        with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("(", r"\(")):
            cfg = _cfg(data_dir, override)  # choices are checked on loading
            check_schedule(cfg, _construct(cfg))  # the runner checks the agent's chunk_aligned


# --------------------------------------------------------------------- whole runs (slow) ----


@pytest.mark.slow
def test_debug_run_logs_every_phase_and_resumes_exactly(leq_debug_run, tmp_path):
    """The session's LEQ debug run (the embedded default at the debug size)."""
    straight, interrupted = leq_debug_run.logdir, tmp_path / "interrupted"
    metrics = leq_debug_run.lines()
    keys = set().union(*metrics)
    for key in (
        "pretrain/bc_loss",
        "pretrain/bc_grad_norm",
        "pretrain/fqe_loss",
        "pretrain/fqe_grad_norm",
        "train/actor_loss",
        "train/actor_grad_norm",
        "train/critic_loss",
        "train/critic_grad_norm",
        "train/q_minus_lambda_return",
        "train/imagined_return",
        "train/model_buffer_size",
        "eval/normalized_score",
        "critic/q_data",
        "critic/mc_return",
        "critic/correlation_with_mc_return",
    ):
        assert key in keys, key
    assert all(np.isfinite(v) for m in metrics for v in m.values())
    world = leq_debug_run.lines("world_model.jsonl")
    assert any("holdout_mse/member_0" in m for m in world)
    assert any("elites" in m for m in world)
    assert checkpoint.checkpoint_steps(straight / WORLD_MODEL_DIR) == [0]  # checkpoint format
    # Expansion: two expansions of rollout_length x rollout_batch = 2 x 512 states, retain 2.
    sizes = [m["train/model_buffer_size"] for m in metrics if "train/model_buffer_size" in m]
    assert sizes[-1] == 2 * 2 * 256

    # A kill between the checkpoints of steps 200 and 300 (the LEQ phase starts at 200).
    copy_as_killed_after(straight, interrupted, 200)
    train(leq_debug_run.cfg, interrupted, quiet=True)
    assert_same_final_state(straight, interrupted, 400)


def _world_leaves(logdir: Path, step: int) -> dict:
    state = final_state(logdir, step)
    found = {k.split("world_model", 1)[1]: v for k, v in state.items() if "world_model" in k}
    assert found, sorted(state)
    return found


@pytest.mark.slow
def test_world_model_is_reused_from_a_path(leq_debug_run, tmp_path, data_dir):
    first = leq_debug_run.logdir
    saved = first / WORLD_MODEL_DIR  # a run's world-model folder
    second = tmp_path / "second"
    proc = cli(
        ["train", "--config", "default", "--config", "debug",
         "--logdir", str(second), "--set", f"dataset.dir={data_dir}",
         "--set", f"world_model.path={saved}", "--set", "train.steps=250", "--quiet"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"world model: loaded {saved}" in proc.stdout
    assert not (second / "world_model.jsonl").exists()  # not retrained
    # The world model is frozen once fitted: the first run's at its end is the one it saved.
    first_world, second_world = _world_leaves(first, 400), _world_leaves(second, 250)
    assert first_world.keys() == second_world.keys()
    for key in first_world:
        np.testing.assert_array_equal(first_world[key], second_world[key], err_msg=key)

    wrong = cli(  # maze2d-umaze: its debug data are the VEM debug run's
        ["train", "--config", "leq_maze2d_umaze", "--config", "debug",
         "--logdir", str(tmp_path / "third"), "--set", f"dataset.dir={data_dir}",
         "--set", f"world_model.path={saved}"],
    )  # fmt: skip
    assert wrong.returncode == 2
    assert "'obs_dim': 11" in wrong.stderr and "'obs_dim': 4" in wrong.stderr
    assert "Traceback" not in wrong.stderr

    missing = cli(
        ["train", "--config", "default", "--config", "debug",
         "--logdir", str(tmp_path / "fourth"), "--set", f"dataset.dir={data_dir}",
         "--set", f"world_model.path={first / 'world_model.npz'}"],
    )  # fmt: skip
    assert missing.returncode == 2
    assert "no world-model folder" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.slow
def test_antmaze_format_file_recorded_in_the_real_env(tmp_path):
    raw = collect("antmaze-umaze", "random", 1500, seed=3, progress=False)
    path = write_d4rl_hdf5(tmp_path / "antmaze-umaze-tiny.hdf5", raw)
    data = load_dataset("antmaze-umaze", {"path": str(path)})
    assert data.observations.shape[1] == 29
    assert set(np.unique(data.rewards)) <= {-1.0, 0.0}  # AntMaze rewards r - 1
    assert data.reward_bias == -1.0

    proc = cli(
        ["train", "--config", "leq_antmaze_umaze", "--config", "debug",
         "--logdir", str(tmp_path / "run"), "--set", f"dataset.path={path}",
         "--set", "eval.video_every=0", "--quiet"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # A success rate: every episode returns 1 (reached the goal, ends there) or 0 (ran to
    # antmaze-umaze's 700-step limit), and the score is 100 x the mean return.
    episodes = result["episodes"]
    successes = result["eval/return"] * episodes
    assert successes == pytest.approx(round(successes)) and 0 <= round(successes) <= episodes
    assert result["eval/normalized_score"] == pytest.approx(100.0 * result["eval/return"])
    assert result["eval/episode_length"] <= 700
    if round(successes) == 0:
        assert result["eval/episode_length"] == 700
