"""Atomic single-file storage of a params pytree plus a small JSON config."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import jax
import numpy as np

CONFIG_KEY = "__config_json__"


def flatten_named(tree: Any) -> dict[str, np.ndarray]:
    """{path string: numpy leaf} for every leaf of a pytree, e.g. "['net']['layers'][0]['w']"."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def unflatten_named(template: Any, arrays: dict[str, np.ndarray], source: str) -> Any:
    """Fill `template` with `arrays` by name; ValueError on a missing or misshaped leaf."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    filled = []
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        if name not in arrays:
            raise ValueError(f"{source}: missing array {name}")
        value = arrays[name]
        if value.shape != np.shape(leaf):
            raise ValueError(
                f"{source}: array {name} has shape {value.shape}, expected {np.shape(leaf)}"
            )
        filled.append(value.astype(np.asarray(leaf).dtype))
    return jax.tree_util.tree_unflatten(treedef, filled)


def save_npz_atomic(path: str, arrays: dict[str, np.ndarray], config: dict) -> None:
    """Write arrays and `config` (as a JSON string entry) to `path`: temp file, then os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    payload = dict(arrays)
    payload[CONFIG_KEY] = np.array(json.dumps(config, sort_keys=True))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_npz(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, config) written by `save_npz_atomic` (no pickle involved)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != CONFIG_KEY}
        if CONFIG_KEY not in f.files:
            raise ValueError(f"{path}: not a world-model file (no {CONFIG_KEY} entry)")
        config = json.loads(str(f[CONFIG_KEY]))
    return arrays, config
