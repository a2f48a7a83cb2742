"""Behaviour snapshots: the policy's parameters every `snapshot_every` environment steps, for
`run.py export` (LOGDIR/snapshots/actor_<step>.npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.failures import reported_write
from agent.runner.rundir import SNAPSHOT_DIR


def save_snapshot(logdir: Path, step: int, params: dict) -> Path:
    """Write the policy's parameters to LOGDIR/snapshots/actor_<step>.npz (atomically)."""
    folder = logdir / SNAPSHOT_DIR
    folder.mkdir(exist_ok=True)
    flat = {
        f"{module}/{name}": np.asarray(value)
        for module, leaves in params.items()
        for name, value in leaves.items()
    }
    path = folder / f"actor_{step:08d}.npz"
    tmp = folder / f".tmp_actor_{step:08d}.npz"
    with reported_write(path):
        try:
            np.savez(tmp, **flat)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(path)
    return path
