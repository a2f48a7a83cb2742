"""Runs that fail safely: divergence, a second writer, a failed write and a damaged world model
each end in one line with their exit status, and nothing already saved is lost."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from agent import checkpoint
from agent.failures import WriteFailed, first_non_finite, first_non_finite_leaf, json_safe
from agent.logger import Logger
from agent.runner import cli
from agent.runner.run_lock import run_lock
from agent.runner.rundir import CHECKPOINT_DIR, WORLD_MODEL_DIR, write_json_atomic
from tests.conftest import ROOT

DEBUG = ["--config", "default", "--config", "debug"]
HUGE_LR = ["--set", "leq.critic_lr=1e9", "--set", "leq.fqe_lr=1e9", "--set", "leq.actor_lr=1e9"]


def train_in_process(capsys, logdir: Path, data_dir: Path, *extra: str) -> tuple[int, str, str]:
    """`run.py train` on the debug default in this process -> (exit status, stdout, stderr)."""
    capsys.readouterr()
    args = ["train", *DEBUG, "--logdir", str(logdir), "--set", f"dataset.dir={data_dir}", *extra]
    status = cli.main(args)
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------- pure pieces (fast) ----
def test_non_finite_values_are_found_and_named():
    assert first_non_finite({"a": 1.0, "b": np.float32(2)}) is None
    key, value = first_non_finite({"a": 1.0, "b": float("nan"), "c": np.inf})
    assert key == "b" and np.isnan(value)
    key, value = first_non_finite({"a": 1.0, "b": np.array([1.0, -np.inf])})
    assert key == "b" and value == -np.inf
    tree = {"w": jax.numpy.ones(3), "b": jax.numpy.array([0.0, np.nan]), "n": jax.numpy.int32(1)}
    assert first_non_finite_leaf(tree) == "['b']"
    assert first_non_finite_leaf({"w": jax.numpy.ones(3)}) is None


def test_json_written_by_the_run_is_valid_with_non_finite_values(tmp_path):
    safe = json_safe({"x": float("nan"), "y": [float("inf"), 1.0], "z": -float("inf")})
    assert safe == {"x": "nan", "y": ["inf", 1.0], "z": "-inf"}
    write_json_atomic(tmp_path / "result.json", {"eval/return": float("nan")})
    text = (tmp_path / "result.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON")) == {
        "eval/return": "nan"
    }
    logger = Logger(tmp_path, 10, quiet=True)
    logger.scalars(1, {"train/loss": float("nan"), "train/ok": 2.0})
    logger.close()
    line = (tmp_path / "metrics.jsonl").read_text().splitlines()[0]
    assert json.loads(line, parse_constant=lambda c: pytest.fail(c)) == {
        "step": 1,
        "train/loss": "nan",
        "train/ok": 2.0,
    }


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    state = {"w": np.arange(4.0)}
    checkpoint.save(tmp_path, 1, state)
    monkeypatch.setattr(checkpoint.np, "savez", _no_space)
    with pytest.raises(WriteFailed, match=r"cannot write .*ckpt_000000002: No space left"):
        checkpoint.save(tmp_path, 2, {"w": np.zeros(4)})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_000000001"]  # no temporary left
    assert checkpoint.load_latest(tmp_path, state)[0] == 1
    np.testing.assert_array_equal(checkpoint.load_latest(tmp_path, state)[1]["w"], np.arange(4.0))


def test_a_failed_metrics_or_event_write_is_one_error_and_closing_stays_quiet(
    tmp_path, monkeypatch
):
    logger = Logger(tmp_path, 10, quiet=True)
    monkeypatch.setattr(logger._writer._writer, "flush", _no_space)
    with pytest.raises(WriteFailed, match=r"cannot write .*tb: No space left on device \(free: "):
        logger.scalars(1, {"train/loss": 1.0})
    monkeypatch.setattr(logger._writer._writer, "close", _no_space)
    logger.close()  # no second error on the way out


def test_a_second_writer_is_refused_and_the_lock_dies_with_its_holder(tmp_path, capsys):
    logdir = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from agent.runner.run_lock import run_lock\n"
            f"with run_lock({str(logdir)!r}):\n"
            "    print('held', flush=True); time.sleep(600)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        status = cli.main(["train", *DEBUG, "--logdir", str(logdir)])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2
        assert err == [
            f"error: {logdir} is in use by another training process (pid {holder.pid}); wait "
            "for it to finish, or choose another --logdir"
        ]
        assert not (logdir / "config.yaml").exists()  # refused before writing anything
    finally:
        holder.kill()
        holder.wait()
    with run_lock(logdir):  # released by the operating system when the holder was killed
        pass


# ----------------------------------------------------------------------- whole runs ----
@pytest.mark.slow
def test_divergence_stops_with_status_3_and_keeps_only_finite_checkpoints(
    tmp_path, data_dir, capsys
):
    logdir = tmp_path / "diverged"
    status, out, err = train_in_process(capsys, logdir, data_dir, *HUGE_LR)
    assert status == 3
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    steps = checkpoint.checkpoint_steps(logdir / CHECKPOINT_DIR)
    assert steps, "at least one finite checkpoint is kept"
    last = checkpoint.checkpoint_path(logdir / CHECKPOINT_DIR, steps[-1]).name
    assert lines[0].startswith("error: diverged at step ")
    assert " is nan; " in lines[0] or "holds NaN or Inf" in lines[0]
    assert lines[0].endswith(f"the last finite checkpoint is {last}")
    for step in steps:
        with np.load(checkpoint.checkpoint_path(logdir / CHECKPOINT_DIR, step) / "state.npz") as z:
            assert all(np.isfinite(z[k]).all() for k in z.files if z[k].dtype.kind == "f")
    for line in (logdir / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl"))
    assert not (logdir / "result.json").exists()
    # A run that is training (its lock held) can still be evaluated, read-only.
    with run_lock(logdir):
        assert cli.main(["eval", "--logdir", str(logdir), "--episodes", "1"]) == 0


@pytest.mark.slow
def test_a_damaged_world_model_is_refitted_and_the_run_resumes(tmp_path, data_dir, capsys):
    logdir = tmp_path / "run"
    status, _, err = train_in_process(capsys, logdir, data_dir)
    assert status == 0, err
    (state,) = (logdir / WORLD_MODEL_DIR).glob("ckpt_*/state.npz")
    state.write_bytes(state.read_bytes()[:1000])
    shutil.rmtree(checkpoint.checkpoint_path(logdir / CHECKPOINT_DIR, 400))  # not finished yet
    status, out, err = train_in_process(capsys, logdir, data_dir)
    assert status == 0, err
    assert f"world model: {state.parent} is damaged (state.npz truncated); refitting" in out
    assert "it matches the recorded digest" in out  # the fit is a function of seed and data
    assert "resumed from step 300" in out
    assert json.loads((logdir / "result.json").read_text())["step"] == 400


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    return mounted.returncode == 0


@pytest.mark.slow
def test_a_full_disk_ends_the_run_in_one_line_with_the_last_checkpoint_intact(tmp_path, data_dir):
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "400k"):
        pytest.skip("this machine does not let the tests mount a small tmpfs")
    try:
        logdir = small / "run"
        proc = subprocess.run(
            [sys.executable, "run.py", "train", *DEBUG, "--logdir", str(logdir)]
            + ["--set", f"dataset.dir={data_dir}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert lines[0].startswith(f"error: cannot write {logdir}/")
        assert "No space left on device (free: " in lines[0]
        folder = logdir / CHECKPOINT_DIR
        assert not [p for p in folder.iterdir() if p.name.startswith(".tmp")]
        steps = checkpoint.checkpoint_steps(folder)
        assert (
            steps
            and checkpoint.damage_reason(checkpoint.checkpoint_path(folder, steps[-1])) is None
        )
    finally:
        time.sleep(0.1)
        subprocess.run(["umount", str(small)], capture_output=True)
