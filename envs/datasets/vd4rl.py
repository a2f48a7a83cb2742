"""Read and write the V-D4RL dataset formats (Lu et al. 2022: visual offline RL on dm_control).

V-D4RL ships each dataset twice, under `<root>/main/<task>/<quality>/`:

    64px/*.npz    one episode per file (OfflineDV2 / DreamerV2 replay format), keys
                  image uint8 [T, 64, 64, 3], action [T, A], reward [T], discount [T] and,
                  in newer files, is_first / is_last / is_terminal bool [T]
    84px/*.hdf5   shards of consecutive steps (DrQ+BC format), keys
                  observation uint8 [N, 3, 84, 84] (channel-first), action [N, A], reward [N],
                  discount [N], step_type [N] (0 first, 1 mid, 2 last; dm_env's StepType)

Both read into one in-memory form, the *episode* (`Episode`), a dict of numpy arrays:

    image        uint8   [T, H, W, 3]   o_t; image[0] is the reset observation
    action       float32 [T, A]         the action that *led to* o_t (taken at o_{t-1});
                                        action[0] is all zeros
    reward       float32 [T]            the reward received on arriving at o_t; reward[0] = 0
    discount     float32 [T]            dm_env discount of o_t: 1, or 0 on reaching a true
                                        terminal; discount[0] = 1
    is_first     bool    [T]            true at t = 0 only
    is_last      bool    [T]            true at t = T - 1 only
    is_terminal  bool    [T]            o_t is a true terminal (never, in dm_control)

This is V-D4RL's own step convention, the DreamerV2 / dm_env one ("action, reward, state":
the action and reward stored at t are those of the step that produced o_t), and it is the same in
both formats: DrQ-v2's dm_env wrapper that recorded the 84px data stores the reset step with a
zero action, reward 0 and discount 1 (v-d4rl `drqbc/dmc.py`, ExtendedTimeStepWrapper), its replay
buffer pairs (obs[i-1], act[i], rew[i], obs[i]) (`drqbc/numpy_replay_buffer.py`), and V-D4RL's
`conversion_scripts/{hdf5_to_npz,npz_to_hdf5}.py` copy action and reward unchanged between the
formats. A transition is therefore (o_t, action[t+1], reward[t+1], o_{t+1}) for t = 0 .. T-2:
V-D4RL's 501-step episodes hold 500 agent steps (1000 simulator steps at action repeat 2).

LEQ_DV3 (`data/v-d4rl/hdf5_to_npz.py`) converts the 84px shards for DreamerV3, whose convention
stores at t the action *taken* at o_t: it shifts actions one step earlier (last action zero),
keeps rewards aligned to observations (reward[0] = 0), marks is_first / is_last at each 501-step
boundary and sets is_terminal false, and resizes to 64x64. `load_vd4rl` yields the convention
above for both formats (where the formats differ it maps step_type to is_first / is_last and
discount == 0 to is_terminal, and resizes). The replay's transitions (o_t, a_t, r_t, o_{t+1}),
a_t the action taken at o_t, are already the alignment LEQ_DV3's shift produces.

Writers validate first and write atomically (`<path>.<pid>.tmp`, then os.replace), so a failed
or interrupted write leaves nothing at the target path. Readers raise DatasetError with a
one-line message naming the file and the key. Unknown keys in files are ignored.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from envs.datasets.errors import DatasetError
from envs.tasks.frames import resize_images

Episode = dict[str, np.ndarray]

EPISODE_KEYS = ("image", "action", "reward", "discount", "is_first", "is_last", "is_terminal")
REQUIRED_NPZ_KEYS = ("image", "action", "reward", "discount")
FLAG_KEYS = ("is_first", "is_last", "is_terminal")
HDF5_KEYS = ("observation", "action", "reward", "discount", "step_type")
STEP_FIRST, STEP_MID, STEP_LAST = 0, 1, 2  # dm_env.StepType values stored in `step_type`
EPISODE_STEPS = 501  # V-D4RL: reset frame + 500 agent steps (action repeat 2)
SIZES = (64, 84)  # V-D4RL's folders: 64px (npz) and 84px (hdf5)
HDF5_SUFFIXES = (".hdf5",)


# --------------------------------------------------------------------------------------------
# Validation


def _found(keys: Iterable[str]) -> str:
    return ", ".join(sorted(keys)) or "nothing"


def _numeric(array: np.ndarray, key: str, source: str) -> None:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DatasetError(f"{source}: key '{key}' has non-numeric dtype {array.dtype}")


def _per_step(
    array: Any, key: str, source: str, length: int, ndim: int, ref: str = "image"
) -> np.ndarray:
    """`array` checked to be numeric with `ndim` dims and `length` rows ([T, 1] -> [T])."""
    array = np.asarray(array)
    _numeric(array, key, source)
    if ndim == 1 and array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != ndim:
        want = "[T]" if ndim == 1 else "[T, A]"
        raise DatasetError(f"{source}: key '{key}' has shape {array.shape}, expected {want}")
    if len(array) != length:
        raise DatasetError(f"{source}: key '{key}' has {len(array)} steps but '{ref}' has {length}")
    return array


def _first_non_finite(array: np.ndarray) -> int | None:
    bad = ~np.isfinite(array)
    if array.ndim > 1:
        bad = bad.reshape(len(array), -1).any(axis=1)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else None


def check_episode(episode: Mapping[str, Any], source: str = "episode") -> Episode:
    """Validate `episode` and return it in the canonical dtypes (see the module docstring).

    Missing is_first / is_last / is_terminal are derived as V-D4RL's older npz files need:
    is_first at step 0, is_last at the final step, is_terminal = (discount == 0) (DreamerV2's
    `load_episodes` rule). Raises DatasetError naming `source` and the key when a required key
    is missing, `image` is not uint8 [T, H, W, 3], `action` is not [T, A], a per-step key has
    another length, T < 2, a float key holds NaN/inf, or is_first / is_last are not set at
    exactly the first / last step (one episode per file or per step_type run).
    """
    for key in REQUIRED_NPZ_KEYS:
        if key not in episode:
            raise DatasetError(f"{source}: missing key '{key}' (found: {_found(episode)})")
    image = np.asarray(episode["image"])
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
        raise DatasetError(
            f"{source}: key 'image' has shape {image.shape} dtype {image.dtype}, "
            "expected uint8 [T, H, W, 3]"
        )
    steps = len(image)
    if steps < 2:
        raise DatasetError(
            f"{source}: key 'image' holds {steps} step(s); an episode needs at least 2 "
            "(the reset observation and one step)"
        )
    out: Episode = {"image": image}
    out["action"] = _per_step(episode["action"], "action", source, steps, 2)
    for key in ("reward", "discount"):
        out[key] = _per_step(episode[key], key, source, steps, 1)
    for key in ("action", "reward", "discount"):
        try:
            out[key] = out[key].astype(np.float32, copy=False)
        except (TypeError, ValueError) as err:  # pragma: no cover - numeric already checked
            raise DatasetError(f"{source}: key '{key}' cannot be read as float32") from err
        index = _first_non_finite(out[key])
        if index is not None:
            raise DatasetError(f"{source}: non-finite value (NaN/inf) in '{key}' at step {index}")
    edge = np.zeros(steps, bool)
    for key in FLAG_KEYS:
        if key in episode:
            out[key] = _per_step(episode[key], key, source, steps, 1) != 0
        elif key == "is_terminal":
            out[key] = out["discount"] == 0
        else:
            out[key] = edge.copy()
            out[key][0 if key == "is_first" else -1] = True
    for key, at in (("is_first", 0), ("is_last", steps - 1)):
        expected = edge.copy()
        expected[at] = True
        if not np.array_equal(out[key], expected):
            hits = np.flatnonzero(out[key]).tolist()
            raise DatasetError(
                f"{source}: key '{key}' is true at steps {hits[:5]}, expected step {at} only "
                "(one episode per file)"
            )
    return out


# --------------------------------------------------------------------------------------------
# Small helpers


def _natural_key(name: str) -> list[Any]:
    """Sort key that orders digit runs numerically (`2.hdf5` before `10.hdf5`)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _tmp_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def _replace_atomically(path: Path, write) -> Path:
    """Call `write(tmp)` then move tmp to `path`; the tmp file never survives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _folder_listing(folder: Path) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return "unreadable"
    return ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "nothing"


# --------------------------------------------------------------------------------------------
# 64px: one .npz per episode


def episode_filename(index: int, length: int) -> str:
    """Deterministic file name of episode `index` holding `length` stored steps (T).

    V-D4RL's files are named `{timestamp}-{uuid4 hex}-{length}.npz` (DreamerV2's `save_episode`,
    V-D4RL's `conversion_scripts/hdf5_to_npz.py`, where length = T = 501). We drop the timestamp
    and uuid for reproducibility and keep the trailing `-{length}.npz` those tools parse:
    `{index:06d}-{length}.npz`; the zero padding makes filename order equal episode order.
    """
    if index < 0 or length < 0:
        raise ValueError(f"episode_filename: index {index} and length {length} must be >= 0")
    return f"{index:06d}-{length}.npz"


def write_npz_episode(path: str | os.PathLike, episode: Mapping[str, Any]) -> Path:
    """Validate `episode` (see `check_episode`) and write it, compressed, to `path`.

    Only the seven episode keys are stored, in their canonical dtypes (derived flags included).
    The write is atomic: nothing appears at `path` when validation or writing fails.
    """
    path = Path(path)
    checked = check_episode(episode, str(path))

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a handle: np.savez would append ".npz" to a name
            np.savez_compressed(handle, **{key: checked[key] for key in EPISODE_KEYS})

    return _replace_atomically(path, write)


def _read_npz_file(path: Path) -> Episode:
    source = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DatasetError(
            f"{source}: not a readable .npz file (truncated or corrupt: {err})"
        ) from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{source}: not an .npz archive (holds a single array)")
    arrays: dict[str, np.ndarray] = {}
    with archive:
        for key in (*REQUIRED_NPZ_KEYS, *FLAG_KEYS):
            if key not in archive.files:
                if key in REQUIRED_NPZ_KEYS:
                    raise DatasetError(
                        f"{source}: missing key '{key}' (found: {_found(archive.files)})"
                    )
                continue
            try:
                arrays[key] = archive[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise DatasetError(
                    f"{source}: key '{key}' cannot be read (truncated or corrupt: {err})"
                ) from err
    return check_episode(arrays, source)


def read_npz_episodes(folder: str | os.PathLike) -> list[Episode]:
    """Read every `*.npz` episode of `folder`, sorted by file name (V-D4RL's 64px format).

    Files lacking is_first / is_last / is_terminal get them derived (see `check_episode`).
    Raises DatasetError when the folder is missing or holds no .npz file, or when a file is
    unreadable or invalid (the message names the file and the key).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    files = sorted(p for p in folder.glob("*.npz") if p.is_file())
    if not files:
        raise DatasetError(f"{folder}: no .npz episode files (found: {_folder_listing(folder)})")
    return [_read_npz_file(path) for path in files]


# --------------------------------------------------------------------------------------------
# 84px: .hdf5 shards of consecutive steps


def _step_types(episode: Episode) -> np.ndarray:
    step_type = np.full(len(episode["image"]), STEP_MID, np.uint8)
    step_type[episode["is_first"]] = STEP_FIRST
    step_type[episode["is_last"]] = STEP_LAST
    return step_type


def write_hdf5_shard(path: str | os.PathLike, episodes: Sequence[Mapping[str, Any]]) -> Path:
    """Write `episodes` as one V-D4RL 84px-layout shard (consecutive steps) to `path`.

    Keys: observation uint8 [N, 3, H, W] (channel-first; V-D4RL's files are 84x84, images are
    stored at the size given, resize first with `resize_images` if needed), action float32,
    reward float32, discount float32, step_type uint8 (0 first, 1 mid, 2 last), gzip-compressed
    as V-D4RL's scripts do. The layout has no is_terminal: readers derive it as discount == 0,
    so an episode whose is_terminal disagrees is refused. Validates first; atomic write.
    """
    path = Path(path)
    source = str(path)
    if len(episodes) == 0:
        raise DatasetError(f"{source}: no episodes to write")
    checked = [check_episode(ep, f"{source} (episode {i})") for i, ep in enumerate(episodes)]
    first = checked[0]
    for i, ep in enumerate(checked):
        where = f"{source} (episode {i})"
        if ep["image"].shape[1:] != first["image"].shape[1:]:
            raise DatasetError(
                f"{where}: key 'image' frames {ep['image'].shape[1:]} differ from episode 0's "
                f"{first['image'].shape[1:]}"
            )
        if ep["action"].shape[1:] != first["action"].shape[1:]:
            raise DatasetError(
                f"{where}: key 'action' has shape {ep['action'].shape}, episode 0 has "
                f"{first['action'].shape}"
            )
        if not np.array_equal(ep["is_terminal"], ep["discount"] == 0):
            raise DatasetError(
                f"{where}: key 'is_terminal' differs from discount == 0; the 84px layout stores "
                "no is_terminal (it is read back as discount == 0)"
            )
    data = {
        "observation": np.concatenate([ep["image"].transpose(0, 3, 1, 2) for ep in checked]),
        "action": np.concatenate([ep["action"] for ep in checked]),
        "reward": np.concatenate([ep["reward"] for ep in checked]),
        "discount": np.concatenate([ep["discount"] for ep in checked]),
        "step_type": np.concatenate([_step_types(ep) for ep in checked]),
    }

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as handle:
            for key, value in data.items():
                handle.create_dataset(key, data=value, compression="gzip", compression_opts=4)

    return _replace_atomically(path, write)


def _read_shard_arrays(path: Path) -> dict[str, np.ndarray]:
    """The five 84px keys of one shard, checked and converted to episode form per step."""
    source = str(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as handle:
            for key in HDF5_KEYS:
                item = handle.get(key)
                if item is None:
                    raise DatasetError(
                        f"{source}: missing key '{key}' (found: {_found(handle.keys())})"
                    )
                if not isinstance(item, h5py.Dataset):
                    raise DatasetError(f"{source}: key '{key}' is a group, expected an array")
                try:
                    arrays[key] = item[()]
                except (OSError, KeyError, RuntimeError, TypeError, ValueError) as err:
                    raise DatasetError(
                        f"{source}: key '{key}' cannot be read (truncated or corrupt: {err})"
                    ) from err
    except DatasetError:
        raise
    except (OSError, KeyError, RuntimeError, TypeError, ValueError) as err:
        raise DatasetError(f"{source}: not a readable HDF5 file ({err})") from err
    obs = np.asarray(arrays["observation"])
    if obs.dtype != np.uint8 or obs.ndim != 4 or obs.shape[1] != 3:
        raise DatasetError(
            f"{source}: key 'observation' has shape {obs.shape} dtype {obs.dtype}, "
            "expected uint8 [N, 3, H, W] (channel-first)"
        )
    steps = len(obs)
    if steps == 0:
        raise DatasetError(f"{source}: key 'observation' holds no steps")
    out = {"image": np.ascontiguousarray(obs.transpose(0, 2, 3, 1))}
    out["action"] = _per_step(arrays["action"], "action", source, steps, 2, "observation")
    for key in ("reward", "discount", "step_type"):
        out[key] = _per_step(arrays[key], key, source, steps, 1, "observation")
    for key in ("action", "reward", "discount"):
        out[key] = out[key].astype(np.float32, copy=False)
        index = _first_non_finite(out[key])
        if index is not None:
            raise DatasetError(f"{source}: non-finite value (NaN/inf) in '{key}' at step {index}")
    step_type = out["step_type"]
    valid = np.isin(step_type, (STEP_FIRST, STEP_MID, STEP_LAST))
    if not valid.all():
        index = int(np.flatnonzero(~valid)[0])
        raise DatasetError(
            f"{source}: key 'step_type' holds {step_type[index].item()} at step {index}, "
            "expected 0 (first), 1 (mid) or 2 (last)"
        )
    out["step_type"] = step_type.astype(np.uint8)
    return out


def _shard_files(folder_or_file: Path) -> list[Path]:
    if folder_or_file.is_file():
        return [folder_or_file]
    if not folder_or_file.is_dir():
        raise DatasetError(f"{folder_or_file}: no such file or folder")
    files = [p for p in folder_or_file.iterdir() if p.suffix in HDF5_SUFFIXES and p.is_file()]
    if not files:
        raise DatasetError(
            f"{folder_or_file}: no .hdf5 shard files (found: {_folder_listing(folder_or_file)})"
        )
    return sorted(files, key=lambda p: _natural_key(p.name))


def _join(pieces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(pieces) == 1:
        return pieces[0]
    return {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}


def read_hdf5_shards(folder_or_file: str | os.PathLike) -> list[Episode]:
    """Read V-D4RL 84px shards (one `.hdf5` file, or every one of a folder) into episodes.

    Shards are read in natural file-name order (`2.hdf5` before `10.hdf5`; V-D4RL's
    `split_hdf5_shards.py` writes unpadded numbers) as one stream of steps, split into episodes
    by step_type, so an episode may continue from one shard into the next. Images become
    [T, H, W, 3]; is_first / is_last come from step_type 0 / 2, is_terminal = (discount == 0).
    Raises DatasetError naming the file and the key for a missing path, an unreadable file, a
    missing key, bad shapes / dtypes, NaN/inf, shards that disagree on frame or action shapes,
    or a step_type sequence that is not `0 1 ... 1 2` per episode (including data that starts or
    ends inside an episode).
    """
    files = _shard_files(Path(folder_or_file))
    episodes: list[Episode] = []
    pending: list[dict[str, np.ndarray]] = []  # pieces of an episode not yet closed by a 2
    reference: tuple[Path, tuple, tuple] | None = None
    for path in files:
        source = str(path)
        data = _read_shard_arrays(path)
        shapes = (data["image"].shape[1:], data["action"].shape[1:])
        if reference is None:
            reference = (path, *shapes)
        if shapes[0] != reference[1]:
            raise DatasetError(
                f"{source}: key 'observation' frames {shapes[0]} differ from "
                f"{reference[0].name}'s {reference[1]}"
            )
        if shapes[1] != reference[2]:
            raise DatasetError(
                f"{source}: key 'action' dims {shapes[1]} differ from "
                f"{reference[0].name}'s {reference[2]}"
            )
        step_type = data.pop("step_type")
        first = step_type == STEP_FIRST
        last = step_type == STEP_LAST
        # Inside a shard a step is `first` exactly when the previous one is `last`.
        broken = np.flatnonzero(first[1:] != last[:-1])
        if broken.size:
            i = int(broken[0])
            raise DatasetError(
                f"{source}: key 'step_type' is {step_type[i + 1]} at step {i + 1} after "
                f"{step_type[i]} at step {i}; expected 0 exactly after 2 (episodes 0 1 ... 1 2)"
            )
        if pending and first[0]:
            raise DatasetError(
                f"{source}: key 'step_type' starts a new episode at step 0 while the previous "
                "shard ended inside an episode (no step_type 2)"
            )
        if not pending and not first[0]:
            raise DatasetError(
                f"{source}: key 'step_type' is {step_type[0]} at step 0 but no episode is open; "
                "expected 0 (data starts inside an episode)"
            )
        cuts = np.flatnonzero(last[:-1]) + 1
        starts = np.concatenate([[0], cuts])
        stops = np.concatenate([cuts, [len(step_type)]])
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            piece = {key: value[start:stop] for key, value in data.items()}
            pending.append(piece)
            if last[stop - 1]:
                joined = _join(pending)
                steps = len(joined["image"])
                joined["is_first"] = np.zeros(steps, bool)
                joined["is_first"][0] = True
                joined["is_last"] = np.zeros(steps, bool)
                joined["is_last"][-1] = True
                joined["is_terminal"] = joined["discount"] == 0
                episodes.append(check_episode(joined, source))
                pending = []
    if pending:
        raise DatasetError(
            f"{files[-1]}: key 'step_type' ends inside an episode (no step_type 2 after the last "
            "step_type 0)"
        )
    return episodes


# --------------------------------------------------------------------------------------------
# Loading, conversion


def load_vd4rl(path: str | os.PathLike, image_size: int | None = 64) -> list[Episode]:
    """Episodes from a V-D4RL folder (or one file) of either format, frames at `image_size`.

    The format is detected from the files found: `*.npz` (64px episodes) or `*.hdf5` (84px
    shards); a folder holding both is refused. Both yield the convention of the module
    docstring (no action / reward shift is needed: the formats share it); frames of another size
    are resized with `resize_images` (84 -> 64 as LEQ_DV3 does); `image_size=None` keeps them.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix == ".npz":
            episodes = [_read_npz_file(path)]
        elif path.suffix in HDF5_SUFFIXES:
            episodes = read_hdf5_shards(path)
        else:
            raise DatasetError(f"{path}: not a V-D4RL file (expected .npz or .hdf5)")
    elif path.is_dir():
        has_npz = any(p.is_file() for p in path.glob("*.npz"))
        has_hdf5 = any(p.is_file() for p in path.iterdir() if p.suffix in HDF5_SUFFIXES)
        if has_npz and has_hdf5:
            raise DatasetError(f"{path}: holds both .npz and .hdf5 files; give one format's folder")
        if has_npz:
            episodes = read_npz_episodes(path)
        elif has_hdf5:
            episodes = read_hdf5_shards(path)
        else:
            raise DatasetError(
                f"{path}: no V-D4RL .npz or .hdf5 files (found: {_folder_listing(path)})"
            )
    else:
        raise DatasetError(f"{path}: no such file or folder")
    if image_size is not None:
        for episode in episodes:
            episode["image"] = resize_images(episode["image"], image_size)
    return episodes


def episodes_to_transitions(episodes: Sequence[Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """Flatten episodes into D4RL-like transitions (o_t, action[t+1], reward[t+1], o_{t+1}).

    One transition per t = 0 .. T-2 of every episode (module-docstring convention):
    observations {"image": uint8 [N, H, W, 3]}, next_observations {"image": ...},
    actions float32 [N, A], rewards float32 [N], terminals bool [N] = is_terminal[t+1],
    timeouts bool [N], true for an episode's last transition when it did not end in a terminal.
    """
    if len(episodes) == 0:
        raise DatasetError("episodes_to_transitions: no episodes")
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("obs", "next", "actions", "rewards", "terminals", "timeouts")
    }
    for i, episode in enumerate(episodes):
        ep = check_episode(episode, f"episode {i}")
        image = ep["image"]
        parts["obs"].append(image[:-1])
        parts["next"].append(image[1:])
        parts["actions"].append(ep["action"][1:])
        parts["rewards"].append(ep["reward"][1:])
        terminals = ep["is_terminal"][1:]
        timeouts = np.zeros_like(terminals)
        timeouts[-1] = not terminals[-1]
        parts["terminals"].append(terminals)
        parts["timeouts"].append(timeouts)
    for key, name in (("obs", "image"), ("actions", "action")):
        shapes = {p.shape[1:] for p in parts[key]}
        if len(shapes) > 1:
            raise DatasetError(
                f"episodes_to_transitions: key '{name}' shapes differ between episodes: "
                f"{sorted(shapes)}"
            )
    return {
        "observations": {"image": np.concatenate(parts["obs"])},
        "next_observations": {"image": np.concatenate(parts["next"])},
        "actions": np.concatenate(parts["actions"]),
        "rewards": np.concatenate(parts["rewards"]),
        "terminals": np.concatenate(parts["terminals"]),
        "timeouts": np.concatenate(parts["timeouts"]),
    }
