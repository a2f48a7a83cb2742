"""Pixel datasets: built in the simulator in V-D4RL's 64px layout, and loaded for training.

Building. A quality of a pixel task `<task>-pixels` (or `-pixels84`) is the behaviour of that
quality on its state twin `<task>-ar2` (envs/datasets/behaviour.py; the trained ones from the
twin's policy files), driven by the twin's state while each step's frame is rendered: the same
dynamics (action repeat 2) and the same observation the policy was trained on. `size` agent
steps are collected as ceil(size / 500) whole 500-step episodes (501 frames with the reset
frame, as V-D4RL's files), written one npz per episode under

    {dataset.dir}/vd4rl-n{size}-s{seed}/main/<task>/<quality>/64px/     (e.g. walker_walk/medium)

(`-pixels84`: 84px/ with hdf5 shards of 50 episodes, V-D4RL's 84px layout), which is V-D4RL's
own folder layout below the `vd4rl-n{size}-s{seed}` root, so the same loader reads users' real
files. The folder is built under a temporary name and renamed when complete. Frames drawn with
the fast settings (`fast_render`, TaskSpec.with_fast_render) look different from V-D4RL's, so
those datasets live under `vd4rl-n{size}-s{seed}-fast` instead.
Episode i resets with a seed drawn from the dataset seed; the policy's randomness comes from one
generator of that seed, so a dataset is a function of (task, quality, size, seed, policy files).
`medium-expert` is the union of the medium and expert datasets (half the episodes each, the
expert half with its own seed, as envs/datasets/collect.py does).

Loading. `load_pixel_dataset` reads a V-D4RL folder (64px npz or 84px hdf5; resized to the
task's frame size) into an OfflineData whose observations are dicts {"image": uint8 [N, H, W,
3]}. Rewards are used as stored (dm_control rewards lie in [0, 1] per control step).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from envs.datasets.behaviour import RandomPolicy, make_behaviour, require_quality, union_parts
from envs.datasets.collect import union_part_seeds
from envs.datasets.errors import DatasetError
from envs.datasets.offline_data import OfflineData
from envs.datasets.trained_policies import dataset_policies_id
from envs.datasets.vd4rl import (
    EPISODE_STEPS,
    episode_filename,
    episodes_to_transitions,
    load_vd4rl,
    write_hdf5_shard,
    write_npz_episode,
)
from envs.tasks.dmc import REPEAT_SUFFIX
from envs.tasks.dmc_pixels import split_pixel_name
from envs.tasks.registry import get_task
from envs.tasks.task import TaskSpec

BUILD_FILE = "collect.json"  # what a built folder was made from (loading compares it)
# Bumped when the builder's output changes; folders of an older one are rebuilt. 2: every frame
# is its step's own (builds before 2 held the episode's last frame at every step).
BUILDER_VERSION = 2
AGENT_STEPS = EPISODE_STEPS - 1  # 500 agent steps per episode
SHARD_EPISODES = 50  # episodes per hdf5 shard of a built 84px dataset


def state_twin(task: TaskSpec) -> TaskSpec:
    """`<task>-ar2` for `<task>-pixels`: where its behaviour policies come from."""
    return get_task(split_pixel_name(task.name)[0] + REPEAT_SUFFIX)


def stored_size(task: TaskSpec) -> int:
    """The frame size datasets of `task` are built at: its name's (64, or 84 for -pixels84),
    also when the task is seen at another size (TaskSpec.at_image_size resizes on loading)."""
    return split_pixel_name(task.name)[1]


def vd4rl_folder(root: str | Path, task: TaskSpec, quality: str, size: int, seed: int) -> Path:
    """The folder a built dataset lives in (module docstring)."""
    name, image = split_pixel_name(task.name)
    name = name.replace("-", "_")
    look = "-fast" if task.fast_render else ""  # the other look never shares a folder
    return (
        Path(root)
        / f"vd4rl-n{size}-s{seed}{look}"
        / "main"
        / name
        / quality.replace("-", "_")
        / f"{image}px"
    )


def behaviour_task(task: TaskSpec, quality: str) -> TaskSpec:
    """The task whose behaviour of `quality` drives `task`: the state twin, except for random."""
    return task if quality == "random" else state_twin(task)


def _behaviour(task: TaskSpec, quality: str, env: Any, seed: int):
    if quality == "random":
        return RandomPolicy(task.act_dim)
    return make_behaviour(quality, behaviour_task(task, quality), env, seed)


def collect_pixel_episodes(
    task: TaskSpec, quality: str, episodes: int, seed: int, progress: bool = True
) -> list[dict[str, np.ndarray]]:
    """`episodes` whole episodes of `quality` in pixel task `task`, V-D4RL's episode layout
    (envs/datasets/vd4rl.py): frame 0 is the reset frame with a zero action and reward 0."""
    parts = union_parts(quality)
    if parts:
        counts = [episodes // len(parts) + (i < episodes % len(parts)) for i in range(len(parts))]
        seeds = union_part_seeds(seed, len(parts))
        return [
            episode
            for part, count, part_seed in zip(parts, counts, seeds, strict=True)
            for episode in collect_pixel_episodes(task, part, count, part_seed, progress)
        ]
    env_ss, policy_ss, factory_ss = np.random.SeedSequence(seed).spawn(3)
    reset_seeds = env_ss.generate_state(episodes)
    rng = np.random.default_rng(policy_ss)
    env = task.make(with_state=True, image_size=stored_size(task), resize_to=None)
    try:
        policy = _behaviour(task, quality, env, int(factory_ss.generate_state(1)[0]))
        if hasattr(policy, "prepare"):
            policy.prepare(episodes * AGENT_STEPS)
        bar = tqdm(
            total=episodes, desc=f"collect {task.name}-{quality}", unit="episode",
            disable=None if progress else True,
        )  # fmt: skip
        with bar:
            out = []
            for i in range(episodes):
                out.append(_episode(env, policy, rng, int(reset_seeds[i]), task.act_dim))
                bar.update(1)
    finally:
        env.close()
    return out


def _episode(env, policy, rng: np.random.Generator, reset_seed: int, act_dim: int) -> dict:
    """One episode to its time limit (or terminal), frames and the V-D4RL arrays."""
    obs, _ = env.reset(seed=reset_seed)
    frames, actions, rewards, discounts = (
        [obs["image"]],
        [np.zeros(act_dim, np.float32)],
        [0.0],
        [1.0],
    )
    done = False
    while not done:
        action = np.clip(np.asarray(policy(obs["state"], rng), np.float32), -1.0, 1.0)
        obs, reward, terminated, truncated, _ = env.step(action)
        frames.append(obs["image"])
        actions.append(action)
        rewards.append(reward)
        discounts.append(0.0 if terminated else 1.0)
        done = terminated or truncated
    steps = len(frames)
    flags = np.zeros(steps, bool)
    return {
        "image": np.stack(frames),
        "action": np.stack(actions).astype(np.float32),
        "reward": np.asarray(rewards, np.float32),
        "discount": np.asarray(discounts, np.float32),
        "is_first": np.r_[True, flags[1:]],
        "is_last": np.r_[flags[:-1], True],
        "is_terminal": np.asarray(discounts, np.float32) == 0.0,
    }


def _build_record(task: TaskSpec, quality: str, size: int, seed: int) -> dict[str, Any]:
    return {
        "builder": BUILDER_VERSION,
        "task": task.name,
        "quality": quality,
        "size": size,
        "seed": seed,
        "policies": dataset_policies_id(state_twin(task), quality),
        **({"render": "fast"} if task.fast_render else {}),
    }


def build_or_reuse_pixels(
    task: TaskSpec, quality: str, size: int, seed: int, root: str | Path, progress: bool = True
) -> Path:
    """The V-D4RL folder of (task, quality, size, seed), collected and written first unless a
    complete one built from the same policy files exists."""
    folder = vd4rl_folder(root, task, quality, size, seed)
    require_quality(quality, behaviour_task(task, quality))  # fail before announcing a build
    record = _build_record(task, quality, size, seed)
    made = folder / BUILD_FILE
    if made.is_file() and json.loads(made.read_text()) == record:
        print(f"dataset: reusing {folder}", flush=True)
        return folder
    episodes = math.ceil(size / AGENT_STEPS)
    if made.is_file():
        print(f"dataset: {folder} was built by an older builder or from other policy files")
    print(f"dataset: building {folder} ({episodes} episodes, {quality} behaviour)", flush=True)
    collected = collect_pixel_episodes(task, quality, episodes, seed, progress)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if stored_size(task) == 84:  # V-D4RL's 84px layout: hdf5 shards
        for shard, start in enumerate(range(0, len(collected), SHARD_EPISODES)):
            write_hdf5_shard(tmp / f"{shard}.hdf5", collected[start : start + SHARD_EPISODES])
    else:
        for i, episode in enumerate(collected):
            write_npz_episode(tmp / episode_filename(i, len(episode["reward"])), episode)
    (tmp / BUILD_FILE).write_text(json.dumps(record, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def folder_summary(folder: Path) -> dict[str, Any]:
    """Episodes, mean return and size on disk of a V-D4RL folder."""
    episodes = load_vd4rl(folder, image_size=None)
    returns = [float(ep["reward"].sum()) for ep in episodes]
    nbytes = sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())
    return {
        "episodes": len(episodes),
        "steps": int(sum(len(ep["reward"]) - 1 for ep in episodes)),
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "megabytes": nbytes / 2**20,
    }


def load_pixel_dataset(folder: str | Path, task: TaskSpec, info: dict) -> OfflineData:
    """A V-D4RL folder as OfflineData with {"image": uint8} observations at the task's size."""
    episodes = load_vd4rl(folder, image_size=task.image_shape[0])
    actions = {ep["action"].shape[-1] for ep in episodes}
    if actions != {task.act_dim}:
        raise DatasetError(
            f"{folder}: key 'action' has {sorted(actions)} dimensions; task {task.name} "
            f"expects {task.act_dim}"
        )
    t = episodes_to_transitions(episodes)
    ends = np.zeros(len(t["rewards"]), np.float32)
    ends[np.cumsum([len(ep["reward"]) - 1 for ep in episodes]) - 1] = 1.0
    returns = [float(ep["reward"].sum()) for ep in episodes]
    return OfflineData(
        observations=t["observations"],
        actions=t["actions"].astype(np.float32),
        rewards=t["rewards"].astype(np.float32),
        next_observations=t["next_observations"],
        terminals=t["terminals"].astype(np.float32),
        timeouts=t["timeouts"].astype(np.float32),
        episode_ends=ends,
        info={**info, "episodes": len(episodes), "return_mean": float(np.mean(returns))},
    )
