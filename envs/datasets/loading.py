"""The single entry point for offline data: `load_dataset(task_name, cfg) -> OfflineData`.

cfg keys (all optional; the defaults are read from configs/defaults.yaml's `dataset` section):
    path         null = build locally in the simulator (cached); otherwise a D4RL .hdf5/.h5 file,
                 a Minari dataset directory, or a local Minari dataset id
    quality      "auto" = "planner" for maze2d tasks, "random" otherwise; or any quality that
                 envs/datasets/behaviour.py lists for the task (random, planner, expert,
                 medium, medium-replay, medium-expert); for a user file "auto" means: the
                 file's metadata, else "random" if the file name says so
    size         steps to collect when building
    seed         collection seed (a built dataset is a function of it)
    dir          cache folder of built datasets: {dir}/{task}-{quality}-n{size}-s{seed}.hdf5
    reward_norm  "auto" (the paper's preprocessing, envs/datasets/preprocess.py) | "none"

Pixel tasks (`<task>-pixels`) read and build V-D4RL folders instead (64px npz episodes or 84px
hdf5 shards; envs/datasets/pixel_datasets.py): `path` is such a folder, e.g. a user's
`<v-d4rl>/main/walker_walk/medium/64px`, and built ones live in
{dir}/vd4rl-n{size}-s{seed}/main/<task>/<quality>/64px; their observations are
{"image": uint8} dicts and their rewards are used as stored.

Methods with a horizon cap (VEM / GEM's `max_step`) check the result with
`envs.datasets.check_segment_lengths`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from envs.datasets.behaviour import require_quality
from envs.datasets.collect import GENERATOR_VERSION, collect_task
from envs.datasets.d4rl_hdf5 import RawData, read_d4rl_hdf5, write_d4rl_hdf5
from envs.datasets.errors import DatasetError
from envs.datasets.minari_source import is_minari_source, read_minari
from envs.datasets.offline_data import OfflineData
from envs.datasets.pixel_datasets import build_or_reuse_pixels, load_pixel_dataset, vd4rl_folder
from envs.datasets.preprocess import REWARD_NORM_MODES, is_random_quality, to_offline_data
from envs.datasets.trained_policies import dataset_policies_id
from envs.tasks.registry import get_task
from envs.tasks.task import TaskSpec

# The one definition of the dataset defaults (the same file agent/config.py reads).
DEFAULTS_FILE = Path(__file__).resolve().parents[2] / "configs" / "defaults.yaml"
HDF5_SUFFIXES = (".hdf5", ".h5")


@functools.cache
def _read_defaults(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    try:
        tree = YAML(typ="safe").load(path.read_text())
    except OSError as err:
        raise DatasetError(f"{path}: cannot read the dataset defaults ({err})") from None
    section = tree.get("dataset") if isinstance(tree, dict) else None
    if not isinstance(section, dict):
        raise DatasetError(f"{path}: no 'dataset' section")
    return section


def dataset_defaults() -> dict[str, Any]:
    """The `dataset` section of configs/defaults.yaml (a fresh copy)."""
    return dict(_read_defaults(DEFAULTS_FILE))


def resolve_quality(task: TaskSpec, quality: str) -> str:
    """The quality to build for `task`: "auto" is "planner" for maze2d, "random" otherwise."""
    if quality != "auto":
        return quality
    return "planner" if task.family == "maze2d" else "random"


def cache_path(folder: str | os.PathLike, task: str, quality: str, size: int, seed: int) -> Path:
    """Where a locally built dataset is cached."""
    return Path(folder) / f"{task}-{quality}-n{size}-s{seed}.hdf5"


def check_dims(raw: Mapping[str, Any], task: TaskSpec, source: str) -> None:
    """DatasetError unless observations / next_observations / actions fit `task`'s dimensions."""
    want = {
        "observations": task.obs_dim,
        "next_observations": task.obs_dim,
        "actions": task.act_dim,
    }
    for key, dim in want.items():
        if key in raw and np.shape(raw[key])[1] != dim:
            raise DatasetError(
                f"{source}: key '{key}' has shape {np.shape(raw[key])}, task {task.name} "
                f"expects [N, {dim}]"
            )


def build_or_reuse(task: TaskSpec, quality: str, size: int, seed: int, folder: str) -> Path:
    """Return the cached dataset file, collecting and writing it first when it is missing."""
    path = cache_path(folder, task.name, quality, size, seed)
    require_quality(quality, task)  # fail before announcing a build
    expected = dataset_policies_id(task, quality)
    if path.is_file() and _stored_policies_id(path) == expected:
        print(f"dataset: reusing {path}", flush=True)
        return path
    if path.is_file():
        print(
            f"dataset: {path} was built from other behaviour policy files; rebuilding", flush=True
        )
    print(f"dataset: building {path} ({size} steps, {quality} behaviour)", flush=True)
    write_d4rl_hdf5(path, collect_task(task, quality, size, seed))
    return path


def _stored_policies_id(path: Path) -> str:
    """The `metadata/policies` a cached dataset was built with ("" when it has none)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            meta = handle.get("metadata")
            value = meta.attrs.get("policies", "") if isinstance(meta, h5py.Group) else ""
    except OSError:
        return ""  # unreadable: rebuild
    return value.decode() if isinstance(value, bytes) else str(value)


def read_user_source(path: str, task: TaskSpec) -> tuple[RawData, str]:
    """Read a user-supplied D4RL file or Minari dataset; returns (raw dict, source kind)."""
    if Path(path).suffix.lower() in HDF5_SUFFIXES or Path(path).is_file():
        return read_d4rl_hdf5(path), "d4rl_hdf5"
    if is_minari_source(path):
        return read_minari(path, obs_dim=task.obs_dim), "minari"
    raise DatasetError(
        f"{path}: no such file, Minari dataset directory, or local Minari dataset id"
    )


def _user_quality(path: str, raw: Mapping[str, Any], quality: str) -> str:
    """Quality label of a user dataset (decides random vs non-random reward scaling)."""
    if quality != "auto":
        return quality
    stated = raw.get("metadata", {}).get("quality")
    if isinstance(stated, str) and stated:
        return stated
    return "random" if is_random_quality(Path(path).stem) else "unknown"


def _warn_if_stale(path: Path, raw: Mapping[str, Any]) -> None:
    """Say so when a cached dataset was written by another version of the collector."""
    version = raw.get("metadata", {}).get("generator_version")
    if version is not None and version != GENERATOR_VERSION:
        print(
            f"dataset: note: {path} was built by collector v{version} (current "
            f"v{GENERATOR_VERSION}); delete it to rebuild",
            flush=True,
        )


def _plain_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar and string entries of a dataset's metadata (arrays are left out of info)."""
    return {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}


def _options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """cfg merged over the defaults of configs/defaults.yaml, with the values checked."""
    opts = {**dataset_defaults(), **dict(cfg)}
    if opts["reward_norm"] not in REWARD_NORM_MODES:
        choices = ", ".join(REWARD_NORM_MODES)
        raise DatasetError(f"dataset.reward_norm: '{opts['reward_norm']}' is not one of {choices}")
    if opts["path"] is None and int(opts["size"]) < 2:
        raise DatasetError(f"dataset.size: {opts['size']} is too small (need at least 2 steps)")
    return opts


def _load_pixels(task: TaskSpec, opts: Mapping[str, Any]) -> OfflineData:
    """A pixel task's dataset: a V-D4RL folder built here or the user's (pixel_datasets.py)."""
    quality = resolve_quality(task, str(opts["quality"]))
    kind = "built" if opts["path"] is None else "vd4rl"
    folder = _ensure(task, opts)
    info = {"path": str(folder), "source": kind, "task": task.name, "quality": quality}
    return load_pixel_dataset(folder, task, info)


def _ensure(task: TaskSpec, opts: Mapping[str, Any]) -> Path:
    """cfg's path, or the cache file / folder to build, built unless it exists."""
    if opts["path"] is not None:
        return Path(opts["path"])
    quality = resolve_quality(task, str(opts["quality"]))
    size, seed = int(opts["size"]), int(opts["seed"])
    if task.image_shape is not None:
        return build_or_reuse_pixels(task, quality, size, seed, opts["dir"])
    return build_or_reuse(task, quality, size, seed, opts["dir"])


def load_task_dataset(task: TaskSpec, cfg: Mapping[str, Any]) -> OfflineData:
    """load_dataset for an explicit TaskSpec (see the module docstring for cfg)."""
    opts = _options(cfg)
    if task.image_shape is not None:
        return _load_pixels(task, opts)
    if opts["path"] is None:
        quality = resolve_quality(task, str(opts["quality"]))
        path = build_or_reuse(task, quality, int(opts["size"]), int(opts["seed"]), opts["dir"])
        raw, kind, source = read_d4rl_hdf5(path), "built", str(path)
        _warn_if_stale(path, raw)
    else:
        source = str(opts["path"])
        raw, kind = read_user_source(source, task)
        quality = _user_quality(source, raw, str(opts["quality"]))
    check_dims(raw, task, source)
    info = {
        "path": source,
        "source": kind,
        "task": task.name,
        "quality": quality,
        "reward_norm": opts["reward_norm"],
        "metadata": _plain_metadata(raw.get("metadata", {})),
    }
    data = to_offline_data(raw, task.family, quality, opts["reward_norm"], info)
    if len(data) == 0:
        raise DatasetError(f"{source}: no transitions left after dropping timeout steps")
    return data


def dataset_path(task_name: str, cfg: Mapping[str, Any]) -> Path:
    """The file `load_dataset(task_name, cfg)` reads: cfg's path, or the cache file to build."""
    task = get_task(task_name)
    opts = _options(cfg)
    if opts["path"] is not None:
        return Path(opts["path"])
    quality = resolve_quality(task, str(opts["quality"]))
    size, seed = int(opts["size"]), int(opts["seed"])
    if task.image_shape is not None:
        return vd4rl_folder(opts["dir"], task, quality, size, seed)
    return cache_path(opts["dir"], task.name, quality, size, seed)


def ensure_dataset(task: str | TaskSpec, cfg: Mapping[str, Any]) -> Path:
    """Build and cache the dataset cfg describes unless it exists; return its file.

    `task`: a name, or a TaskSpec (e.g. one drawn with the fast look). With cfg["path"] set
    nothing is built and that path is returned.
    """
    return _ensure(get_task(task) if isinstance(task, str) else task, _options(cfg))


def load_dataset(task_name: str, cfg: Mapping[str, Any]) -> OfflineData:
    """Load (or build and cache) the offline dataset of `task_name` as OfflineData.

    Raises DatasetError (one line naming the file and the problem) for unusable input.
    """
    return load_task_dataset(get_task(task_name), cfg)
