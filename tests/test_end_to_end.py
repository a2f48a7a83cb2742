"""`run.py` end to end on the debug preset: files written, errors, SIGKILL and resume.

The debug run itself is the session's `leq_debug_run` (tests/conftest.py): a real `run.py`
subprocess, shared with the fingerprint, LEQ and world-model tests. User mistakes run the CLI in
this process (`cli`): they stop before anything is compiled.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from agent import checkpoint
from agent.config import load_config
from agent.runner.rundir import CHECKPOINT_DIR
from tests.conftest import ROOT, cli
from tests.resume import assert_same_final_state, copy_as_killed_after, train_straight_and_resumed


@pytest.mark.slow
def test_debug_run_writes_config_metrics_events_and_checkpoint(leq_debug_run):
    logdir = leq_debug_run.logdir
    assert (logdir / "config.yaml").is_file()
    lines = leq_debug_run.lines()
    scores = [x["eval/normalized_score"] for x in lines if "eval/normalized_score" in x]
    assert scores and all(np.isfinite(scores))
    assert any(k.startswith(("train/", "pretrain/")) for x in lines for k in x)
    assert list((logdir / "tb").glob("events.out.tfevents.*"))
    assert checkpoint.checkpoint_steps(logdir / CHECKPOINT_DIR)[-1] == 400
    assert list((logdir / "videos").glob("*.gif"))  # debug records none; eval.video_every=200
    result = leq_debug_run.result
    assert result["step"] == 400 and "eval/normalized_score" in result

    evaluated = cli(["eval", "--logdir", str(logdir), "--episodes", "1"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "normalized score" in evaluated.stdout


@pytest.mark.slow
def test_sigkill_after_first_checkpoint_then_resume(leq_debug_run, tmp_path):
    """`run.py` killed (SIGKILL) after its first checkpoint, rerun with the same command: it
    resumes and ends bit-identical to the session's uninterrupted run of the same config."""
    logdir = tmp_path / "killed"
    args = leq_debug_run.train_args(logdir)
    steps = leq_debug_run.cfg.train.steps
    proc = subprocess.Popen(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not checkpoint.checkpoint_steps(logdir / CHECKPOINT_DIR):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint.checkpoint_steps(logdir / CHECKPOINT_DIR)
    assert killed_at, "no checkpoint was written before the deadline"
    assert killed_at[-1] < steps, "the run finished before it could be killed"

    resumed = cli(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    line = next(x for x in resumed.stdout.splitlines() if x.startswith("resumed from step"))
    assert int(line.split()[-1]) >= killed_at[-1] > 0
    assert checkpoint.checkpoint_steps(logdir / CHECKPOINT_DIR)[-1] == steps
    assert_same_final_state(leq_debug_run.logdir, logdir, steps)


def _check_trimmed_metrics(interrupted) -> None:
    logged = [json.loads(x) for x in (interrupted / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in logged]
    assert steps == sorted(steps), "metrics logged after the resumed checkpoint were not trimmed"
    assert [x["step"] for x in logged if "train/loss" in x] == [100, 200, 300, 400]


@pytest.mark.slow
def test_resumed_bc_run_ends_with_the_same_parameters(bc_debug_run, tmp_path):
    """A run killed after checkpoint 200 and resumed ends bit-identical to an uninterrupted one,
    with its replay on the device (`auto` places the debug data there)."""
    cfg = bc_debug_run.cfg
    assert cfg.train.steps == 400 and cfg.replay.placement == "auto"
    interrupted = tmp_path / "resumed"
    copy_as_killed_after(bc_debug_run.logdir, interrupted, 200)
    from agent.runner import train

    train(cfg, interrupted, quiet=True)
    assert_same_final_state(bc_debug_run.logdir, interrupted, 400)
    _check_trimmed_metrics(interrupted)


@pytest.mark.slow
def test_resumed_bc_run_on_the_host_replay_ends_with_the_same_parameters(tmp_path, data_dir):
    """The same with the replay on the host (batches drawn there by (seed, step), prefetched)."""
    sets = [f"dataset.dir={data_dir}", "method=bc", "replay.placement=host"]
    cfg = load_config(["default", "debug"], sets)
    _, _, interrupted = train_straight_and_resumed(cfg, tmp_path, kill_after=200)
    _check_trimmed_metrics(interrupted)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--config", "no_such_config"], "config 'no_such_config' not found"),
        (["--set", "no.such.key=1"], "unknown key 'no'"),
        (["--set", "train.steps=many"], "key 'train.steps' expects int, got 'many'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, fragment, tmp_path):
    proc = cli(["train", *args, "--logdir", str(tmp_path / "x")])
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("preset", "override", "fragment"),
    [
        ("vem_maze2d_umaze", "vem.max_step=50", "more than vem's horizon cap max_step=50"),
        ("gem_hopper", "gem.max_step=500", "gem.max_step=500: hopper's episodes reach 1000 rows"),
    ],
)
def test_horizon_cap_refuses_longer_trajectories_in_one_line(
    preset, override, fragment, tmp_path, data_dir
):
    """The memory kernels are uncapped: data whose trajectories exceed max_step are refused."""
    proc = cli(
        ["train", "--config", preset, "--config", "debug", "--logdir", str(tmp_path / "x")]
        + ["--set", override, "--set", f"dataset.dir={data_dir}"]
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert fragment in proc.stderr


def test_jax_section_is_checked():
    from agent.config import ConfigError
    from agent.runner.jax_setup import configure_jax

    with pytest.raises(ConfigError, match="jax.platform='quantum' is not one of"):
        load_config(["debug"], ["jax.platform=quantum"])  # defaults.yaml's choices
    cfg = load_config(["debug"], ["jax.host_device_count=4"])
    jax.devices()  # the backend has started: the device count can no longer change
    with pytest.raises(ConfigError, match="JAX had already started with 1 device"):
        configure_jax(cfg.jax)
