"""Atomic, checksummed checkpoints of a whole training state (any pytree of arrays and scalars).

A checkpoint is a folder `ckpt_<step>` holding `state.npz` (one array per leaf, keyed by its tree
path) and `meta.json` (the step, the leaf names, and the SHA-256 and size of `state.npz`). It is
written under a temporary name and renamed into place, so a crash at any moment leaves either the
previous checkpoints or the new one, never half of one. The last `keep` checkpoints are kept.

A checkpoint damaged afterwards (a truncated or altered `state.npz`, a missing or unreadable
`meta.json`) is detected by `damage_reason`; `load_latest` then reports it in one line on stderr
and falls back to the newest intact checkpoint. Damaged folders are left in place for inspection; a
later `save` of the same step replaces them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from agent.failures import reported_write

PREFIX = "ckpt_"
STATE_FILE = "state.npz"
META_FILE = "meta.json"
_HASH_BLOCK = 1 << 20


def _leaf_names(tree: Any) -> list[str]:
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path) for path, _ in paths]


def checkpoint_path(directory: Path, step: int) -> Path:
    """The folder of checkpoint `step` in `directory`."""
    return directory / f"{PREFIX}{step:09d}"


def checkpoint_steps(directory: Path) -> list[int]:
    """Steps of the checkpoint folders in `directory` (renamed into place, so complete when
    written; `damage_reason` tells whether one was damaged since), oldest first."""
    if not directory.is_dir():
        return []
    steps = []
    for entry in directory.iterdir():
        name = entry.name
        if name.startswith(PREFIX) and name[len(PREFIX) :].isdigit() and entry.is_dir():
            steps.append(int(name[len(PREFIX) :]))
    return sorted(steps)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the bytes of `path`."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def save(directory: Path, step: int, state: Any, keep: int = 3, extra: dict | None = None) -> Path:
    """Write `state` as checkpoint `step` atomically, then prune old checkpoints.

    An existing folder of the same step (e.g. a damaged one) is replaced. Pruning keeps the newest
    `keep` checkpoints of steps <= `step`; later steps (left by a run that resumed from an earlier
    checkpoint because they were damaged) are kept until a save of their step replaces them.
    """
    final = checkpoint_path(directory, step)
    tmp = directory / f".tmp_{final.name}_{os.getpid()}"
    with reported_write(final):
        directory.mkdir(parents=True, exist_ok=True)
        try:
            _write_folder(tmp, state, extra, step)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # the previous checkpoints stay as they were
            raise
        _move_into_place(tmp, final)
    current = [s for s in checkpoint_steps(directory) if s <= step]
    for old_step in current[:-keep] if keep > 0 else []:
        shutil.rmtree(checkpoint_path(directory, old_step), ignore_errors=True)
    return final


def _write_folder(tmp: Path, state: Any, extra: dict | None, step: int) -> None:
    """`state.npz` and `meta.json` of `state`, fsynced, in the new folder `tmp`."""
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    leaves = jax.tree_util.tree_leaves(state)
    arrays = {name: np.asarray(leaf) for name, leaf in zip(_leaf_names(state), leaves, strict=True)}
    with (tmp / STATE_FILE).open("wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    # Hash the file as written (npz writing seeks back, so the stream cannot be hashed on the fly).
    meta = {
        **(extra or {}),
        "step": step,
        "leaves": list(arrays),
        "sha256": file_sha256(tmp / STATE_FILE),
        "bytes": (tmp / STATE_FILE).stat().st_size,
    }
    with (tmp / META_FILE).open("w") as handle:
        handle.write(json.dumps(meta, indent=1))
        handle.flush()
        os.fsync(handle.fileno())


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the written folder `tmp` to `final`, replacing an existing folder of that step."""
    directory = final.parent
    if final.exists() or final.is_symlink():
        # Move the old folder aside first: a directory cannot be renamed onto a non-empty one.
        old = directory / f".old_{final.name}_{os.getpid()}"
        if old.exists():
            _remove(old)
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


def read_meta(path: Path) -> dict | None:
    """The `meta.json` of checkpoint folder `path` as a dict, or None if missing or unreadable."""
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def damage_reason(path: Path) -> str | None:
    """Why checkpoint folder `path` cannot be trusted, or None if it is intact.

    Intact: `meta.json` is a readable JSON object naming this folder's step, and `state.npz` has
    the size and SHA-256 recorded there. A `meta.json` without a checksum (written before
    checksums existed) is accepted when every member of `state.npz` passes the zip CRC check.
    """
    meta = read_meta(path)
    if meta is None:
        return (
            f"{META_FILE} missing" if not (path / META_FILE).exists() else f"{META_FILE} unreadable"
        )
    digits = path.name[len(PREFIX) :]
    if digits.isdigit() and meta.get("step") != int(digits):
        return f"{META_FILE} names step {meta.get('step')!r}"
    state = path / STATE_FILE
    try:
        size = state.stat().st_size
        if "sha256" not in meta:
            with zipfile.ZipFile(state) as archive:
                bad = archive.testzip()
            return None if bad is None else "checksum mismatch"
        if "bytes" in meta and size != meta["bytes"]:
            return f"{STATE_FILE} truncated" if size < meta["bytes"] else "checksum mismatch"
        if file_sha256(state) != meta["sha256"]:
            return "checksum mismatch"
    except FileNotFoundError:
        return f"{STATE_FILE} missing"
    except (OSError, zipfile.BadZipFile, EOFError):
        return f"{STATE_FILE} unreadable"
    return None


def load(path: Path, template: Any) -> Any:
    """Read a checkpoint into the structure of `template` (shapes and dtypes are checked)."""
    with np.load(path / STATE_FILE) as stored:
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
    """(step, state) of the newest intact checkpoint, or None if there is none.

    Damaged newer checkpoints (see `damage_reason`) are skipped, not deleted, and reported in one
    line on stderr, e.g. `checkpoint runs/x/checkpoints/ckpt_000000200 is damaged (checksum
    mismatch); using ckpt_000000100`.
    """
    damaged = []
    for step in reversed(checkpoint_steps(directory)):
        path = checkpoint_path(directory, step)
        reason = damage_reason(path)
        if reason is None:
            if damaged:
                _report(damaged, f"using {path.name}")
            return step, load(path, template)
        damaged.append((path, reason))
    if damaged:
        _report(damaged, "no intact checkpoint is left")
    return None


def _report(damaged: list[tuple[Path, str]], action: str) -> None:
    """One stderr line naming every damaged checkpoint (newest first) and what happens instead."""
    if len(damaged) == 1:
        ((path, reason),) = damaged
        line = f"checkpoint {path} is damaged ({reason}); {action}"
    else:
        first = damaged[0][0]
        names = ", ".join(f"{p.name} ({reason})" for p, reason in damaged)
        line = f"checkpoints in {first.parent} are damaged: {names}; {action}"
    print(line, file=sys.stderr, flush=True)
