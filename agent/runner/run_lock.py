"""One writer per run folder: an OS lock on LOGDIR/.lock, held while `train` runs.

`flock` locks belong to the open file, so the operating system releases them when the holder
exits, however it exits (a crash or SIGKILL included): no stale marker is ever left to clean.
Readers (`run.py eval`) take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from agent.failures import RunFolderBusy, reported_write

LOCK_FILE = ".lock"


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "an unknown process"


@contextlib.contextmanager
def run_lock(logdir: Path) -> Iterator[None]:
    """Hold LOGDIR's lock for the block; `RunFolderBusy` names the holder if another has it."""
    logdir = Path(logdir)
    path = logdir / LOCK_FILE
    with reported_write(path):
        logdir.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(
                f"{logdir} is in use by another training process ({_holder(path)}); wait for it "
                "to finish, or choose another --logdir"
            ) from None
        with reported_write(path):
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
        yield
    finally:
        handle.close()  # releases the lock
