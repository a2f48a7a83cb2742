"""Helpers for the resume-equality tests: what a kill leaves behind, and the final state."""

import shutil
from pathlib import Path

import numpy as np

from agent import checkpoint
from agent.runner.rundir import CHECKPOINT_DIR, RESULT_FILE


def copy_as_killed_after(run: Path, copy: Path, step: int) -> None:
    """Copy a finished run as a kill after checkpoint `step` would have left it."""
    shutil.copytree(run, copy)
    for later in checkpoint.checkpoint_steps(copy / CHECKPOINT_DIR):
        if later > step:
            shutil.rmtree(checkpoint.checkpoint_path(copy / CHECKPOINT_DIR, later))
    (copy / RESULT_FILE).unlink()


def final_state(logdir: Path, step: int) -> dict:
    """Every array of checkpoint `step`, by leaf name."""
    with np.load(checkpoint.checkpoint_path(logdir / CHECKPOINT_DIR, step) / "state.npz") as z:
        return {k: z[k] for k in z.files}


def assert_same_final_state(a: Path, b: Path, step: int) -> None:
    """Bit-identical checkpoints `step` in two runs."""
    sa, sb = final_state(a, step), final_state(b, step)
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


def train_straight_and_resumed(cfg, tmp_path: Path, kill_after: int) -> tuple[dict, Path, Path]:
    """Train `cfg` straight through, then again from a copy of that run as a kill after
    checkpoint `kill_after` would have left it; assert both end bit-identical.
    -> (the straight run's result, its logdir, the resumed run's logdir)."""
    from agent.runner.loop import train

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = train(cfg, straight, quiet=True)
    copy_as_killed_after(straight, resumed, kill_after)
    train(cfg, resumed, quiet=True)
    assert_same_final_state(straight, resumed, cfg.train.steps)
    return result, straight, resumed
