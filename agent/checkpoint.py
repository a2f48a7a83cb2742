"""Atomic checkpoints of a whole training state (any pytree of arrays and scalars).

A checkpoint is a folder `ckpt_<step>` holding `state.npz` (one array per leaf, keyed by its tree
path) and `meta.json`. It is written under a temporary name and renamed into place, so a crash
at any moment leaves either the previous checkpoints or the new one, never half of one. The last
`keep` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

PREFIX = "ckpt_"


def _leaf_names(tree: Any) -> list[str]:
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path) for path, _ in paths]


def checkpoint_steps(directory: Path) -> list[int]:
    """Steps of the complete checkpoints in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    steps = []
    for entry in directory.iterdir():
        name = entry.name
        if name.startswith(PREFIX) and name[len(PREFIX) :].isdigit() and entry.is_dir():
            steps.append(int(name[len(PREFIX) :]))
    return sorted(steps)


def save(directory: Path, step: int, state: Any, keep: int = 3, extra: dict | None = None) -> Path:
    """Write `state` as checkpoint `step` atomically, then delete all but the newest `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{step:09d}"
    tmp = directory / f".tmp_{PREFIX}{step:09d}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    leaves = jax.tree_util.tree_leaves(state)
    arrays = {name: np.asarray(leaf) for name, leaf in zip(_leaf_names(state), leaves, strict=True)}
    with (tmp / "state.npz").open("wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    meta = {"step": step, "leaves": list(arrays), **(extra or {})}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_steps(directory)[:-keep]:
        shutil.rmtree(directory / f"{PREFIX}{old:09d}", ignore_errors=True)
    return final


def load(path: Path, template: Any) -> Any:
    """Read a checkpoint into the structure of `template` (shapes and dtypes are checked)."""
    with np.load(path / "state.npz") as stored:
        names = _leaf_names(template)
        missing = [n for n in names if n not in stored.files]
        if missing:
            raise ValueError(f"checkpoint {path} does not match this run (missing {missing[0]})")
        leaves = []
        for name, leaf in zip(names, jax.tree_util.tree_leaves(template), strict=True):
            value = stored[name]
            if value.shape != np.shape(leaf):
                raise ValueError(
                    f"checkpoint {path}: {name} has shape {value.shape}, expected {np.shape(leaf)}"
                )
            leaves.append(value)
    treedef = jax.tree_util.tree_structure(template)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def load_latest(directory: Path, template: Any) -> tuple[int, Any] | None:
    """(step, state) of the newest checkpoint, or None if there is none."""
    steps = checkpoint_steps(directory)
    if not steps:
        return None
    step = steps[-1]
    return step, load(directory / f"{PREFIX}{step:09d}", template)
