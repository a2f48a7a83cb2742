"""Read and write offline datasets in the D4RL HDF5 layout.

Both directions use one in-memory form, the *raw dict* (`RawData`), which mirrors what D4RL's
`env.get_dataset()` returns:

    observations        float32 [N, obs_dim]   the state in which action i was taken
    actions             float32 [N, act_dim]
    rewards             float32 [N]
    terminals           bool    [N]            true terminal: do not bootstrap from step i
    timeouts            bool    [N]            step i is the last of a truncated trajectory
    next_observations   float32 [N, obs_dim]   optional; without it, obs[i + 1] is the next state
    infos/<name>        array   [N, ...]       optional extras (qpos, qvel, goal, ...)
    metadata            dict[str, scalar | str | array]   optional description of the dataset

In the file, `metadata` is a group whose entries are attributes (scalars and strings) or datasets
(arrays); D4RL's own files store `metadata/*` as datasets, ours as attributes; both are read.
Unknown keys are ignored when reading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from envs.datasets.errors import DatasetError

RawData = dict[str, Any]

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
# Keys whose values must be finite for training to make sense.
FINITE_KEYS = ("observations", "actions", "rewards", "next_observations")
_DTYPES = {
    "observations": np.float32,
    "next_observations": np.float32,
    "actions": np.float32,
    "rewards": np.float32,
    "terminals": np.bool_,
    "timeouts": np.bool_,
}
_NDIM = {
    "observations": 2,
    "next_observations": 2,
    "actions": 2,
    "rewards": 1,
    "terminals": 1,
    "timeouts": 1,
}


# --------------------------------------------------------------------------------------------
# Validation (shared by every source of raw dicts)


def coerce_array(key: str, value: Any, source: str) -> np.ndarray:
    """Return `value` as an array with the dtype and ndim the raw layout prescribes for `key`.

    A per-step key stored as [N, 1] is accepted and flattened to [N] (some writers do that);
    any other ndim mismatch raises DatasetError naming `source`, the key and the shape.
    """
    array = np.asarray(value)
    want_ndim = _NDIM[key]
    if want_ndim == 1 and array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != want_ndim:
        raise DatasetError(
            f"{source}: key '{key}' has shape {array.shape}, expected {want_ndim}-D "
            f"({'[N]' if want_ndim == 1 else '[N, dim]'})"
        )
    try:
        if _DTYPES[key] is np.bool_:
            return array != 0
        return array.astype(_DTYPES[key], copy=False)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{source}: key '{key}' has non-numeric dtype {array.dtype}") from err


def first_non_finite(array: np.ndarray) -> int | None:
    """Index (along axis 0) of the first row holding NaN or +-inf, or None when all are finite."""
    bad = ~np.isfinite(array)
    if array.ndim > 1:
        bad = bad.reshape(len(array), -1).any(axis=1)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else None


def validate_raw(raw: Mapping[str, Any], source: str) -> None:
    """Raise DatasetError unless `raw` is a well-formed raw dict (see the module docstring).

    Checks: required keys present, ndims, equal leading lengths, next_observations shaped like
    observations, at least one transition, finite observations / actions / rewards.
    """
    for key in REQUIRED_KEYS:
        if key not in raw:
            found = ", ".join(sorted(k for k in raw if k != "metadata")) or "nothing"
            raise DatasetError(f"{source}: missing required key '{key}' (found: {found})")
    keys = [k for k in (*REQUIRED_KEYS, "next_observations") if k in raw]
    for key in keys:
        if np.ndim(raw[key]) != _NDIM[key]:
            raise DatasetError(
                f"{source}: key '{key}' has shape {np.shape(raw[key])}, expected {_NDIM[key]}-D"
            )
    n = len(raw["observations"])
    for key in keys:
        if len(raw[key]) != n:
            raise DatasetError(
                f"{source}: leading lengths disagree: 'observations' "
                f"{np.shape(raw['observations'])} vs '{key}' {np.shape(raw[key])}"
            )
    if n == 0:
        raise DatasetError(f"{source}: the dataset holds no transitions")
    if "next_observations" in raw and np.shape(raw["next_observations"]) != np.shape(
        raw["observations"]
    ):
        raise DatasetError(
            f"{source}: 'next_observations' {np.shape(raw['next_observations'])} does not match "
            f"'observations' {np.shape(raw['observations'])}"
        )
    for key in FINITE_KEYS:
        if key in raw:
            index = first_non_finite(np.asarray(raw[key]))
            if index is not None:
                raise DatasetError(
                    f"{source}: non-finite value (NaN/inf) in '{key}' at index {index}"
                )


# --------------------------------------------------------------------------------------------
# Reading


def _to_python(value: Any) -> Any:
    """Convert an HDF5 attribute / scalar dataset value into a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        return _to_python(value.item())
    return value


def _read_metadata(group: h5py.Group) -> dict[str, Any]:
    """Collect a metadata group's attributes and (non-group) datasets into one dict."""
    meta: dict[str, Any] = {k: _to_python(v) for k, v in group.attrs.items()}
    for name, item in group.items():
        if isinstance(item, h5py.Dataset):
            meta[name] = _to_python(item[()])
    return meta


def _read_file(handle: h5py.File, source: str, include_infos: bool) -> RawData:
    """Read the known keys of an open D4RL-layout file into a raw dict (unvalidated lengths)."""
    raw: RawData = {}
    for key in (*REQUIRED_KEYS, "next_observations"):
        item = handle.get(key)
        if item is None:
            if key in REQUIRED_KEYS:
                found = ", ".join(sorted(handle.keys())) or "nothing"
                raise DatasetError(f"{source}: missing required key '{key}' (found: {found})")
            continue
        if not isinstance(item, h5py.Dataset):
            raise DatasetError(f"{source}: key '{key}' is a group, expected an array")
        raw[key] = coerce_array(key, item[()], source)
    infos = handle.get("infos")
    if include_infos and isinstance(infos, h5py.Group):
        for name, item in infos.items():
            if isinstance(item, h5py.Dataset) and item.shape[:1] == (len(raw["rewards"]),):
                raw[f"infos/{name}"] = item[()]
    meta = handle.get("metadata")
    raw["metadata"] = _read_metadata(meta) if isinstance(meta, h5py.Group) else {}
    return raw


def read_d4rl_hdf5(path: str | os.PathLike, *, include_infos: bool = False) -> RawData:
    """Load a D4RL-layout HDF5 file into a validated raw dict.

    Unknown keys are ignored; `infos/*` arrays with one row per step are loaded only when
    `include_infos`. Raises DatasetError (message names the file) when the file is missing, is not
    HDF5 or is truncated, lacks a required key, has inconsistent shapes or non-finite values.
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise DatasetError(f"{source}: no such file")
    if not path.is_file():
        raise DatasetError(f"{source}: not a file")
    try:
        with h5py.File(path, "r") as handle:
            raw = _read_file(handle, source, include_infos)
    except DatasetError:
        raise
    except (OSError, KeyError, RuntimeError, TypeError, ValueError) as err:
        # h5py raises OSError for non-HDF5 and truncated files, and sometimes KeyError /
        # RuntimeError when a truncated file's object headers point past its end.
        raise DatasetError(f"{source}: not a readable HDF5 file ({err})") from err
    validate_raw(raw, source)
    return raw


# --------------------------------------------------------------------------------------------
# Writing


def _write_metadata(group: h5py.Group, meta: Mapping[str, Any]) -> None:
    """Store scalars / strings as attributes and arrays as datasets of `group`."""
    for name, value in meta.items():
        if value is None:
            continue
        if isinstance(value, Mapping | list | tuple):
            group.attrs[name] = json.dumps(value)  # keep structured values readable as text
        elif isinstance(value, np.ndarray) and value.ndim > 0:
            group.create_dataset(name, data=value)
        else:
            group.attrs[name] = value


def write_d4rl_hdf5(path: str | os.PathLike, raw: Mapping[str, Any]) -> Path:
    """Validate `raw` and write it to `path` in the D4RL layout; return the path.

    The file is written to `<path>.<pid>.tmp` first and moved into place with os.replace, so a
    reader never sees a half-written dataset (an interrupted build leaves no file at `path`), and
    two processes building the same dataset at once do not write into one temporary file.
    """
    path = Path(path)
    validate_raw(raw, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as handle:
            for key, value in raw.items():
                if key == "metadata":
                    _write_metadata(handle.create_group("metadata"), value)
                else:
                    dtype = _DTYPES.get(key)
                    handle.create_dataset(key, data=np.asarray(value, dtype=dtype))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
