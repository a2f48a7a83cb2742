"""Ctrl-C in an online run: the latch holds it over the chunk whose replay write consumed the
old replay, then the loop saves the finished chunk; the rerun ends bit-identical."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import checkpoint
from agent import programs as programs_lib
from agent.config import load_config
from agent.runner.interrupts import InterruptLatch
from agent.runner.loop import train
from agent.runner.rundir import CHECKPOINT_DIR
from tests.resume import assert_same_final_state

ROOT = Path(__file__).resolve().parents[1]


def test_latch_records_sigint_and_sigterm_and_restores_the_handlers():
    original = signal.signal(signal.SIGINT, signal.default_int_handler)  # CI may run with ^C off
    try:
        before = signal.getsignal(signal.SIGTERM)
        for signum in (signal.SIGINT, signal.SIGTERM):
            with InterruptLatch() as latch:
                assert not latch.pending
                os.kill(os.getpid(), signum)
                assert latch.pending
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is before
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        # An ignored signal stays ignored inside the latch (a run started with nohup / `&`).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with InterruptLatch() as latch:
            os.kill(os.getpid(), signal.SIGINT)
            assert not latch.pending
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, original)


def test_sigterm_stops_a_background_run_with_its_work_saved(tmp_path):
    """`kill` on a run started where SIGINT is ignored (nohup ... &) saves and exits 130."""
    logdir = tmp_path / "run"
    command = (
        f"trap '' INT; exec {sys.executable} run.py train --config sac_hopper --config debug "
        f"--set train.steps=100000 --logdir {logdir}"
    )  # the shell ignores SIGINT for its child, as `nohup ... &` does (no fork in this process)
    proc = subprocess.Popen(
        ["bash", "-c", command], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    deadline = time.time() + 240
    while not (logdir / "checkpoints").is_dir() and time.time() < deadline:
        time.sleep(0.5)  # the first checkpoint (step 100): the loop is running
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert re.search(r"interrupted at step \d+; rerun the same command to resume", out), out


def _sac_debug():
    return load_config(["sac_hopper", "debug"], ["eval.episodes=1", "eval.final_episodes=1"])


@pytest.fixture(scope="module")
def straight_sac_run(tmp_path_factory) -> Path:
    """sac_hopper debug trained to its end without interruption."""
    logdir = tmp_path_factory.mktemp("straight") / "run"
    train(_sac_debug(), logdir, quiet=True)
    return logdir


def test_ctrl_c_during_a_learning_chunk_saves_it_and_the_rerun_matches(
    tmp_path, monkeypatch, capsys, straight_sac_run
):
    cfg = _sac_debug()
    straight, interrupted = straight_sac_run, tmp_path / "interrupted"

    original = programs_lib.Programs.chunk

    def chunk_that_is_interrupted(self, phase, length, fed=False):
        program = original(self, phase, length, fed)

        def run(state, replay, rng, step):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the chunk runs
            return program(state, replay, rng, step)

        return run

    monkeypatch.setattr(programs_lib.Programs, "chunk", chunk_that_is_interrupted)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # CI may run with ^C off
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, interrupted, quiet=True)
    finally:
        signal.signal(signal.SIGINT, handler)
    monkeypatch.setattr(programs_lib.Programs, "chunk", original)
    # The first learning chunk (env steps 150-200) ran to its end and was saved.
    assert "interrupted at step 200;" in capsys.readouterr().out
    train(cfg, interrupted, quiet=True)
    assert_same_final_state(straight, interrupted, 400)


def test_ctrl_c_during_a_periodic_checkpoint_write_still_saves_and_the_rerun_matches(
    tmp_path, monkeypatch, capsys, straight_sac_run
):
    """^C can land anywhere after a chunk (logging, evaluation, the checkpoint write itself):
    the loop still saves the last finished chunk and says so."""
    interrupted = tmp_path / "interrupted"
    original, calls = checkpoint.save, []

    def save_interrupted_once(directory, step, state, keep=3, extra=None):
        calls.append(step)
        if len(calls) == 1:
            (directory / f".tmp_{step}_partial").mkdir(parents=True)  # a write cut short
            raise KeyboardInterrupt
        return original(directory, step, state, keep, extra)

    monkeypatch.setattr(checkpoint, "save", save_interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        train(_sac_debug(), interrupted, quiet=True)
    monkeypatch.setattr(checkpoint, "save", original)
    first = calls[0]
    assert calls == [first, first]  # the periodic write, then the save on interrupt
    assert f"interrupted at step {first};" in capsys.readouterr().out
    assert checkpoint.checkpoint_steps(interrupted / CHECKPOINT_DIR) == [first]
    train(_sac_debug(), interrupted, quiet=True)
    assert_same_final_state(straight_sac_run, interrupted, 400)
