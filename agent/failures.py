"""The faults a run reports in one line and the exit status of each.

`Diverged` (exit 3): a logged metric or the agent's state is no longer finite; nothing is saved
from that state. `WriteFailed` (exit 1): a checkpoint, metrics or TensorBoard write failed (a full
disk, a read-only folder); the previous checkpoints stay intact. `RunFolderBusy` (exit 2): another
process is training into the same run folder.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


class Diverged(Exception):
    """Training produced a non-finite value; the run stops without saving it."""

    exit_status = 3


class WriteFailed(Exception):
    """A file of the run could not be written."""

    exit_status = 1


class RunFolderBusy(Exception):
    """Another process holds the run folder's lock."""

    exit_status = 2


def free_space(path: Path) -> str:
    """Free space on the filesystem of `path` (or its nearest existing parent): '12.3 MiB'."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "unknown"
    return f"{free / 2**20:.1f} MiB"


@contextlib.contextmanager
def reported_write(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing `path` into one `WriteFailed` line:
    `cannot write PATH: No space left on device (free: 0.0 MiB)`."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WriteFailed(f"cannot write {path}: {reason} (free: {free_space(path)})") from None


def first_non_finite(metrics: Mapping) -> tuple[str, float] | None:
    """(key, value) of the first metric that is NaN or infinite, or None when all are finite."""
    for key, value in metrics.items():
        number = np.asarray(value)
        if number.dtype.kind in "fc" and not np.all(np.isfinite(number)):
            return key, float(np.ravel(number)[~np.isfinite(np.ravel(number))][0])
    return None


@jax.jit
def _finite_leaves(tree) -> list:
    # One reduction per floating leaf, in one program: a pass over the parameters per check.
    return [
        jnp.all(jnp.isfinite(leaf)) if jnp.issubdtype(leaf.dtype, jnp.inexact) else jnp.bool_(True)
        for leaf in jax.tree.leaves(tree)
    ]


def first_non_finite_leaf(tree) -> str | None:
    """The tree path of the first leaf of `tree` holding NaN or Inf, or None when all are finite."""
    flags = jax.device_get(_finite_leaves(tree))
    if all(flags):
        return None
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    return next(path for path, ok in zip(paths, flags, strict=True) if not ok)


def json_safe(value):
    """`value` with non-finite floats as the strings 'nan', 'inf', '-inf' (which `float()` reads
    back), so that every line written is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
