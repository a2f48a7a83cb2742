"""V-D4RL formats: npz episodes, hdf5 shards, layout, loading, resizing and transitions."""

import h5py
import numpy as np
import pytest

from envs.datasets.errors import DatasetError
from envs.datasets.vd4rl import (
    EPISODE_KEYS,
    episode_filename,
    episodes_to_transitions,
    load_vd4rl,
    read_hdf5_shards,
    read_npz_episodes,
    write_hdf5_shard,
    write_npz_episode,
)
from envs.tasks.frames import resize_images


def make_episode(seed: int = 0, steps: int = 6, size: int = 16, act_dim: int = 2, terminal=False):
    """A random episode in V-D4RL's convention (step 0: zero action, reward 0, discount 1)."""
    rng = np.random.default_rng(seed)
    action = rng.uniform(-1, 1, size=(steps, act_dim)).astype(np.float32)
    action[0] = 0
    reward = rng.normal(size=steps).astype(np.float32)
    reward[0] = 0
    discount = np.ones(steps, np.float32)
    is_terminal = np.zeros(steps, bool)
    if terminal:
        discount[-1] = 0
        is_terminal[-1] = True
    is_first = np.zeros(steps, bool)
    is_first[0] = True
    is_last = np.zeros(steps, bool)
    is_last[-1] = True
    return {
        "image": rng.integers(0, 256, size=(steps, size, size, 3), dtype=np.uint8),
        "action": action,
        "reward": reward,
        "discount": discount,
        "is_first": is_first,
        "is_last": is_last,
        "is_terminal": is_terminal,
    }


def assert_same_episodes(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert set(a) == set(EPISODE_KEYS)
        for key in EPISODE_KEYS:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def shard_arrays(episodes) -> dict:
    """The 84px layout of `episodes`, built here independently of the module's writer."""
    step_types = []
    for ep in episodes:
        st = np.ones(len(ep["image"]))  # float, as V-D4RL's npz_to_hdf5.py writes it
        st[0], st[-1] = 0, 2
        step_types.append(st)
    return {
        "observation": np.concatenate([ep["image"].transpose(0, 3, 1, 2) for ep in episodes]),
        "action": np.concatenate([ep["action"] for ep in episodes]),
        "reward": np.concatenate([ep["reward"] for ep in episodes]),
        "discount": np.concatenate([ep["discount"] for ep in episodes]),
        "step_type": np.concatenate(step_types),
    }


def write_raw_h5(path, arrays: dict) -> None:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


# --------------------------------------------------------------------------------------------
# Round trips and layout


def test_episode_filename():
    assert episode_filename(3, 501) == "000003-501.npz"
    assert sorted([episode_filename(10, 5), episode_filename(2, 7)])[0] == "000002-7.npz"


def test_npz_round_trip_bit_exact_and_sorted(tmp_path):
    episodes = [make_episode(seed, steps=5 + seed, terminal=seed == 1) for seed in range(3)]
    for index in (2, 0, 1):  # write out of order: reading sorts by file name
        ep = episodes[index]
        write_npz_episode(tmp_path / episode_filename(index, len(ep["image"])), ep)
    assert_same_episodes(read_npz_episodes(tmp_path), episodes)
    assert not list(tmp_path.glob("*.tmp"))


def test_npz_without_flags_gets_them_derived(tmp_path):
    ep = make_episode(terminal=True)
    np.savez(tmp_path / "a.npz", **{k: ep[k] for k in ("image", "action", "reward", "discount")})
    (got,) = read_npz_episodes(tmp_path)
    assert_same_episodes([got], [ep])


def test_hdf5_round_trip_bit_exact(tmp_path):
    episodes = [make_episode(seed, steps=4 + seed, terminal=seed == 2) for seed in range(4)]
    path = write_hdf5_shard(tmp_path / "0.hdf5", episodes)
    with h5py.File(path, "r") as f:
        assert f["observation"].shape == (sum(len(e["image"]) for e in episodes), 3, 16, 16)
        assert f["observation"].dtype == np.uint8
        assert f["step_type"][:6].tolist() == [0, 1, 1, 2, 0, 1]
    assert_same_episodes(read_hdf5_shards(path), episodes)
    assert_same_episodes(read_hdf5_shards(tmp_path), episodes)


def test_hdf5_episode_continues_across_shards_in_natural_order(tmp_path):
    episodes = [make_episode(seed, steps=7) for seed in range(3)]
    arrays = shard_arrays(episodes)
    cut = 10  # inside the second episode
    write_raw_h5(tmp_path / "2.hdf5", {k: v[:cut] for k, v in arrays.items()})
    write_raw_h5(tmp_path / "10.hdf5", {k: v[cut:] for k, v in arrays.items()})
    assert_same_episodes(read_hdf5_shards(tmp_path), episodes)


def test_both_formats_load_to_the_same_episodes(tmp_path):
    episodes = [make_episode(seed, steps=6, terminal=seed == 0) for seed in range(3)]
    npz_dir, h5_dir = tmp_path / "64px", tmp_path / "84px"
    for i, ep in enumerate(episodes):
        write_npz_episode(npz_dir / episode_filename(i, 6), ep)
    h5_dir.mkdir()
    write_raw_h5(h5_dir / "0.hdf5", shard_arrays(episodes))  # as V-D4RL writes them
    from_npz = load_vd4rl(npz_dir, image_size=16)
    from_h5 = load_vd4rl(h5_dir, image_size=16)
    assert_same_episodes(from_npz, episodes)
    assert_same_episodes(from_h5, from_npz)
    assert_same_episodes(load_vd4rl(h5_dir / "0.hdf5", image_size=None), episodes)
    assert_same_episodes(load_vd4rl(npz_dir / episode_filename(1, 6), 16), [episodes[1]])


def test_resize_84_to_64(tmp_path):
    ep = make_episode(steps=3, size=84)
    ep["image"][1] = 77  # a constant frame stays constant under bicubic resampling
    write_hdf5_shard(tmp_path / "0.hdf5", [ep])
    (got,) = load_vd4rl(tmp_path, image_size=64)
    assert got["image"].shape == (3, 64, 64, 3)
    assert got["image"].dtype == np.uint8
    assert (got["image"][1] == 77).all()
    np.testing.assert_array_equal(got["action"], ep["action"])
    (kept,) = load_vd4rl(tmp_path, image_size=None)
    assert kept["image"].shape == (3, 84, 84, 3)
    assert resize_images(ep["image"], 84) is ep["image"]


def transitions_reference(episodes) -> dict:
    """Slow per-step loop over (o_t, a_{t+1}, r_{t+1}, o_{t+1})."""
    out = {k: [] for k in ("obs", "next", "actions", "rewards", "terminals", "timeouts")}
    for ep in episodes:
        steps = len(ep["image"])
        for t in range(steps - 1):
            out["obs"].append(ep["image"][t])
            out["next"].append(ep["image"][t + 1])
            out["actions"].append(ep["action"][t + 1])
            out["rewards"].append(ep["reward"][t + 1])
            out["terminals"].append(bool(ep["is_terminal"][t + 1]))
            out["timeouts"].append(t == steps - 2 and not ep["is_terminal"][t + 1])
    return {k: np.array(v) for k, v in out.items()}


def test_episodes_to_transitions_matches_loop():
    episodes = [make_episode(seed, steps=2 + 3 * seed, terminal=seed % 2 == 1) for seed in range(4)]
    got = episodes_to_transitions(episodes)
    want = transitions_reference(episodes)
    np.testing.assert_array_equal(got["observations"]["image"], want["obs"])
    np.testing.assert_array_equal(got["next_observations"]["image"], want["next"])
    for key in ("actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert got["observations"]["image"].dtype == np.uint8
    assert got["actions"].dtype == np.float32 and got["rewards"].dtype == np.float32
    assert got["terminals"].dtype == bool and got["timeouts"].dtype == bool
    assert got["terminals"].sum() == 2 and got["timeouts"].sum() == 2


# --------------------------------------------------------------------------------------------
# Bad files


def _set(key, value_fn):
    def mutate(ep):
        ep[key] = value_fn(ep)

    return mutate


def _drop(key):
    def mutate(ep):
        del ep[key]

    return mutate


def _nan(key, index=2, value=np.nan):
    def mutate(ep):
        ep[key] = ep[key].copy()
        ep[key][index] = value

    return mutate


BAD_EPISODES = {
    "missing-action": (_drop("action"), "action"),
    "missing-image": (_drop("image"), "image"),
    "image-float": (_set("image", lambda e: e["image"].astype(np.float32)), "image"),
    "image-no-channel": (_set("image", lambda e: e["image"][..., 0]), "image"),
    "image-channel-first": (_set("image", lambda e: e["image"].transpose(0, 3, 1, 2)), "image"),
    "action-1d": (_set("action", lambda e: e["action"][:, 0]), "action"),
    "action-short": (_set("action", lambda e: e["action"][:-1]), "action"),
    "reward-long": (_set("reward", lambda e: np.zeros(len(e["reward"]) + 1, np.float32)), "reward"),
    "discount-2d": (_set("discount", lambda e: np.ones((len(e["image"]), 2))), "discount"),
    "is_last-short": (_set("is_last", lambda e: e["is_last"][1:]), "is_last"),
    "action-nan": (_nan("action"), "action"),
    "reward-nan": (_nan("reward"), "reward"),
    "discount-inf": (_nan("discount", value=np.inf), "discount"),
    "is_first-twice": (_nan("is_first", value=True), "is_first"),
    "is_last-missing": (_nan("is_last", index=-1, value=False), "is_last"),
    "one-step": (lambda e: e.update({k: v[:1] for k, v in e.items()}), "image"),
}


@pytest.mark.parametrize("case", sorted(BAD_EPISODES))
def test_bad_npz_file_names_file_and_key(tmp_path, case):
    mutate, key = BAD_EPISODES[case]
    ep = make_episode()
    mutate(ep)
    path = tmp_path / "000000-6.npz"
    np.savez(path, **ep)  # unvalidated, as a foreign writer might
    with pytest.raises(DatasetError) as info:
        read_npz_episodes(tmp_path)
    message = str(info.value)
    assert path.name in message and f"'{key}'" in message and "\n" not in message


@pytest.mark.parametrize("case", sorted(BAD_EPISODES))
def test_bad_episode_is_not_written(tmp_path, case):
    mutate, key = BAD_EPISODES[case]
    ep = make_episode()
    mutate(ep)
    path = tmp_path / "000000-6.npz"
    with pytest.raises(DatasetError) as info:
        write_npz_episode(path, ep)
    assert path.name in str(info.value) and f"'{key}'" in str(info.value)
    shard = tmp_path / "0.hdf5"
    with pytest.raises(DatasetError) as info:
        write_hdf5_shard(shard, [make_episode(1), ep])
    assert shard.name in str(info.value) and f"'{key}'" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_truncated_and_corrupt_npz(tmp_path):
    ep = make_episode()
    path = tmp_path / "000000-6.npz"
    np.savez(path, **ep)  # stored, not compressed: the middle of the file is image bytes
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"000000-6\.npz: key 'image' cannot be read"):
        read_npz_episodes(tmp_path)
    path.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(DatasetError, match=r"000000-6\.npz: not a readable \.npz"):
        read_npz_episodes(tmp_path)


def test_missing_or_empty_folders(tmp_path):
    for reader in (read_npz_episodes, read_hdf5_shards, load_vd4rl):
        with pytest.raises(DatasetError, match="nowhere"):
            reader(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    for reader in (read_npz_episodes, read_hdf5_shards, load_vd4rl):
        with pytest.raises(DatasetError, match=r"notes\.txt"):  # lists what the folder holds
            reader(tmp_path)


def test_load_refuses_mixed_folder(tmp_path):
    ep = make_episode()
    write_npz_episode(tmp_path / episode_filename(0, 6), ep)
    write_hdf5_shard(tmp_path / "0.hdf5", [ep])
    with pytest.raises(DatasetError, match="both"):
        load_vd4rl(tmp_path)


def _h5(update=None, drop=None, episodes=2):
    arrays = shard_arrays([make_episode(seed) for seed in range(episodes)])
    if drop:
        del arrays[drop]
    for key, fn in (update or {}).items():
        arrays[key] = fn(arrays[key])
    return arrays


def _at(index, value):
    def fn(array):
        array = array.copy()
        array[index] = value
        return array

    return fn


BAD_SHARDS = {
    "missing-step_type": (_h5(drop="step_type"), "step_type"),
    "missing-observation": (_h5(drop="observation"), "observation"),
    "obs-channel-last": (_h5({"observation": lambda o: o.transpose(0, 2, 3, 1)}), "observation"),
    "obs-float": (_h5({"observation": lambda o: o.astype(np.float32)}), "observation"),
    "action-1d": (_h5({"action": lambda a: a[:, 0]}), "action"),
    "reward-short": (_h5({"reward": lambda r: r[:-1]}), "reward"),
    "action-nan": (_h5({"action": _at(3, np.nan)}), "action"),
    "reward-inf": (_h5({"reward": _at(3, np.inf)}), "reward"),
    "step_type-bad-value": (_h5({"step_type": _at(3, 5)}), "step_type"),
    "step_type-starts-mid": (_h5({"step_type": _at(0, 1)}), "step_type"),
    "step_type-ends-open": (_h5({"step_type": _at(-1, 1)}), "step_type"),
    "step_type-missing-last": (_h5({"step_type": _at(5, 1)}), "step_type"),
    "step_type-extra-first": (_h5({"step_type": _at(3, 0)}), "step_type"),
}


@pytest.mark.parametrize("case", sorted(BAD_SHARDS))
def test_bad_hdf5_shard_names_file_and_key(tmp_path, case):
    arrays, key = BAD_SHARDS[case]
    path = tmp_path / "0.hdf5"
    write_raw_h5(path, arrays)
    with pytest.raises(DatasetError) as info:
        read_hdf5_shards(tmp_path)
    message = str(info.value)
    assert path.name in message and f"'{key}'" in message and "\n" not in message


def test_truncated_hdf5_and_mismatched_shards(tmp_path):
    path = write_hdf5_shard(tmp_path / "0.hdf5", [make_episode(size=32)])
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetError, match=r"0\.hdf5: "):
        read_hdf5_shards(path)
    write_hdf5_shard(tmp_path / "0.hdf5", [make_episode(size=16)])
    write_hdf5_shard(tmp_path / "1.hdf5", [make_episode(size=8)])
    with pytest.raises(DatasetError, match=r"1\.hdf5: key 'observation'"):
        read_hdf5_shards(tmp_path)


def test_hdf5_writer_refuses_terminal_flag_it_cannot_store(tmp_path):
    ep = make_episode()
    ep["is_terminal"] = ep["is_terminal"].copy()
    ep["is_terminal"][-1] = True  # discount stays 1
    with pytest.raises(DatasetError, match=r"0\.hdf5 \(episode 0\): key 'is_terminal'"):
        write_hdf5_shard(tmp_path / "0.hdf5", [ep])
    assert list(tmp_path.iterdir()) == []
