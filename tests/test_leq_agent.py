"""The LEQ agent on the shared stack: debug runs, resume, world-model reuse, ablations, AntMaze."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from agent.config import ConfigError, load_config
from agent.methods import make_agent
from agent.replay import from_offline
from agent.train import train
from envs import get_task
from envs.collect import collect
from envs.d4rl_hdf5 import write_d4rl_hdf5
from envs.datasets import load_dataset
from tests.resume import assert_same_final_state, copy_as_killed_after

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("leq_data")


def _cfg(data_dir, *overrides):
    sets = [f"dataset.dir={data_dir}", "eval.video_every=0", *overrides]
    return load_config(["leq_hopper", "debug"], sets)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_debug_run_logs_every_phase_and_resumes_exactly(tmp_path, data_dir):
    cfg = _cfg(data_dir)
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train(cfg, straight, quiet=True)

    metrics = _lines(straight / "metrics.jsonl")
    keys = set().union(*metrics)
    for key in (
        "pretrain/bc_loss",
        "pretrain/fqe_loss",
        "train/actor_loss",
        "train/critic_loss",
        "train/q_minus_lambda_return",
        "train/imagined_return",
        "train/model_buffer_size",
        "eval/normalized_score",
    ):
        assert key in keys, key
    assert all(np.isfinite(v) for m in metrics for v in m.values())
    world = _lines(straight / "world_model.jsonl")
    assert any("holdout_mse/member_0" in m for m in world)
    assert any("elites" in m for m in world)
    assert (straight / "world_model.npz").is_file()
    # Expansion: two expansions of rollout_length x rollout_batch = 2 x 512 states, retain 2.
    sizes = [m["train/model_buffer_size"] for m in metrics if "train/model_buffer_size" in m]
    assert sizes[-1] == 2 * 2 * 256

    # A kill between the checkpoints of steps 200 and 300 (the LEQ phase starts at 200).
    copy_as_killed_after(straight, interrupted, 200)
    train(cfg, interrupted, quiet=True)
    assert_same_final_state(straight, interrupted, 400)


def test_world_model_is_reused_from_a_path(tmp_path, data_dir):
    first = tmp_path / "first"
    train(_cfg(data_dir, "train.steps=250"), first, quiet=True)
    saved = first / "world_model.npz"
    proc = subprocess.run(
        [sys.executable, "run.py", "train", "--config", "leq_hopper", "--config", "debug",
         "--logdir", str(tmp_path / "second"), "--set", f"dataset.dir={data_dir}",
         "--set", f"world_model.path={saved}", "--set", "train.steps=250", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"world model: loaded {saved}" in proc.stdout
    assert not (tmp_path / "second" / "world_model.jsonl").exists()  # not retrained

    wrong = subprocess.run(
        [sys.executable, "run.py", "train", "--config", "leq_walker2d", "--config", "debug",
         "--logdir", str(tmp_path / "third"), "--set", f"dataset.dir={data_dir}",
         "--set", f"world_model.path={saved}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert wrong.returncode == 2
    assert "obs_dim=11" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.mark.parametrize(
    "overrides",
    [
        ["leq.policy_objective=multi_step", "leq.critic_target=multi_step"],
        ["leq.policy_objective=one_step", "leq.critic_target=one_step"],
        ["leq.expectile=false"],
    ],
    ids=["multi_step", "one_step", "no_expectile"],
)
def test_ablation_switches_train(data_dir, overrides):
    cfg = _cfg(data_dir, *overrides, "leq.pretrain=false")
    spec = get_task(cfg.task)
    data = load_dataset(cfg.task, cfg.dataset)
    agent = make_agent(cfg, spec.obs_dim, spec.act_dim, data)
    agent.world_params = agent.world.init_params(jax.random.PRNGKey(0))
    state = agent.init_state(jax.random.PRNGKey(1))
    state, metrics = agent.train_chunk(state, from_offline(data))
    assert int(state.step) == cfg.train.updates_per_call
    assert np.isfinite(float(metrics["train/critic_loss"]))
    assert np.isfinite(float(metrics["train/actor_loss"]))


def test_bad_leq_settings_are_config_errors(data_dir):
    spec = get_task("hopper")
    for override, fragment in (
        ("leq.policy_objective=two_step", "leq.policy_objective='two_step' is not one of"),
        ("leq.rollout_freq=30", "leq.rollout_freq=30 must be a multiple"),
        ("train.steps=200", "leaves no LEQ steps"),
        ("world_model.hidden=[8]", "world_model: weight_decays needs 2 entries"),
    ):
        cfg = _cfg(data_dir, override)
        with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("(", r"\(")):
            make_agent(cfg, spec.obs_dim, spec.act_dim, None)


def test_antmaze_format_file_recorded_in_the_real_env(tmp_path):
    raw = collect("antmaze-umaze", "random", 1500, seed=3, progress=False)
    path = write_d4rl_hdf5(tmp_path / "antmaze-umaze-tiny.hdf5", raw)
    data = load_dataset("antmaze-umaze", {"path": str(path)})
    assert data.observations.shape[1] == 29
    assert set(np.unique(data.rewards)) <= {-1.0, 0.0}  # AntMaze rewards r - 1
    assert data.reward_bias == -1.0

    proc = subprocess.run(
        [sys.executable, "run.py", "train", "--config", "leq_antmaze_umaze", "--config", "debug",
         "--logdir", str(tmp_path / "run"), "--set", f"dataset.path={path}",
         "--set", "eval.video_every=0", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0.0 <= result["eval/normalized_score"] <= 100.0  # a success rate in %
