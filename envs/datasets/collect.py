"""Build a dataset by rolling a behaviour policy in the real simulator.

The result is a raw dict in the D4RL layout (envs/datasets/d4rl_hdf5.py) with exactly `size`
steps and a stored `next_observations` key. Trajectories end on `terminated` (terminals = 1) or
`truncated` (timeouts = 1); the last step of the dataset gets timeouts = 1 unless it is terminal,
because its trajectory was cut by the size limit.

Continuing behaviours (the maze2d planner, see envs/datasets/behaviour.py) reproduce D4RL's
maze2d generator: one long simulator run that is never reset; a segment ends (timeouts = 1, no
reset) when the planner reaches its goal or after max_episode_steps steps, and a new goal is
drawn.
Stored next_observations make these transitions usable, where D4RL's own files drop them.

Determinism: one np.random.SeedSequence(seed) is split into the environment's reset seed, the
policy's np.random.Generator and the behaviour factory's seed, so equal seeds give equal arrays.
The parts of a union quality (medium-expert) are collected with different seeds
(`union_part_seeds`), so they share neither reset seeds nor noise streams.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from envs.datasets.behaviour import (
    BehaviourFactory,
    make_behaviour,
    require_quality,
    union_parts,
)
from envs.datasets.d4rl_hdf5 import RawData

# Importing trained_policies registers medium / expert / medium-replay / full-replay.
from envs.datasets.trained_policies import dataset_policies_id
from envs.tasks.registry import get_task
from envs.tasks.task import TaskSpec

# Bump whenever a change makes collect() produce different data for the same arguments; cached
# datasets record it in their metadata. 2: the parts of medium-expert get different seeds.
GENERATOR_VERSION = 2
# spawn_key prefix of union part seeds: disjoint from the children (0,), (1,), (2,) of _seeds
UNION_SPAWN_KEY = 0x756E696F  # "unio"
_PROGRESS_MIN_SIZE = 20_000  # smaller collections take well under a few seconds: no bar
_PROGRESS_CHUNK = 1_000


def _seeds(seed: int) -> tuple[int, np.random.Generator, int]:
    """(env reset seed, policy generator, factory seed), all derived from one SeedSequence."""
    env_ss, policy_ss, factory_ss = np.random.SeedSequence(seed).spawn(3)
    return (
        int(env_ss.generate_state(1)[0]),
        np.random.default_rng(policy_ss),
        int(factory_ss.generate_state(1)[0]),
    )


def union_part_seeds(seed: int, n_parts: int) -> list[int]:
    """Collection seeds of the parts of a union quality.

    Part 0 keeps `seed` (so the medium half of medium-expert is the medium dataset of that seed);
    part i > 0 gets a 32-bit seed from SeedSequence(seed, spawn_key=(UNION_SPAWN_KEY, i)), so the
    parts differ in reset seeds, policy noise and factory seed.
    """
    seeds = [int(seed)]
    for i in range(1, n_parts):
        ss = np.random.SeedSequence(seed, spawn_key=(UNION_SPAWN_KEY, i))
        seeds.append(int(ss.generate_state(1)[0]))
    return seeds


def restart_time_limit(env: gym.Env) -> bool:
    """Restart the step counter of the TimeLimit wrapper in `env`'s wrapper chain.

    A continuing behaviour starts a new segment without resetting the simulator (as D4RL's maze2d
    generator, which ran the bare maze without a time limit); the task's time limit must then
    count from the segment start. Returns False when no TimeLimit wrapper was found.
    """
    layer: Any = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.wrappers.TimeLimit):
            layer._elapsed_steps = 0  # gymnasium keeps no public setter for this counter
            return True
        layer = layer.env
    return False


def _allocate(task: TaskSpec, size: int, with_goal: bool) -> RawData:
    """Zero-filled arrays for `size` steps of `task`."""
    raw: RawData = {
        "observations": np.zeros((size, task.obs_dim), np.float32),
        "actions": np.zeros((size, task.act_dim), np.float32),
        "rewards": np.zeros(size, np.float32),
        "terminals": np.zeros(size, bool),
        "timeouts": np.zeros(size, bool),
        "next_observations": np.zeros((size, task.obs_dim), np.float32),
    }
    if with_goal:
        raw["infos/goal"] = np.zeros((size, 2), np.float32)
    return raw


def _start_segment(policy: Any, obs: np.ndarray, rng: np.random.Generator) -> None:
    """Tell a policy that a segment starts at `obs` (optional hook)."""
    hook = getattr(policy, "start_segment", None)
    if hook is not None:
        hook(obs, rng)


def _segment_done(policy: Any, next_obs: np.ndarray) -> bool:
    """Ask a continuing policy whether the step to `next_obs` ended its segment (goal reached)."""
    hook = getattr(policy, "segment_done", None)
    return bool(hook(next_obs)) if hook is not None else False


def collect_task(
    task: TaskSpec,
    quality: str,
    size: int,
    seed: int,
    progress: bool = True,
    *,
    factory: BehaviourFactory | None = None,
) -> RawData:
    """Roll `quality`'s behaviour policy in `task`'s simulator for exactly `size` steps.

    Returns a raw dict (observations, actions, rewards, terminals, timeouts, next_observations,
    infos/goal when the policy has a goal, metadata). See the module docstring for the rules.
    `factory` replaces the registered behaviour factory of `quality` (e.g. a trained-policy
    factory bound to another policy folder); it cannot be combined with a union quality.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    parts = union_parts(quality)
    if parts is not None:
        if factory is not None:
            raise ValueError(f"union quality '{quality}' takes no factory")
        return _collect_union(task, quality, parts, size, seed, progress)
    env_seed, rng, factory_seed = _seeds(seed)
    env = task.make(seed=env_seed)
    try:
        if factory is None:
            policy = make_behaviour(quality, task, env, factory_seed)
        else:
            policy = factory(task, env, factory_seed)
        if hasattr(policy, "prepare"):
            policy.prepare(size)
        continuing = bool(getattr(policy, "continuing", False))
        raw = _allocate(task, size, with_goal=getattr(policy, "goal", None) is not None)
        bar = tqdm(
            total=size,
            desc=f"collect {task.name}-{quality}",
            unit="step",
            # None: tqdm shows the bar on a terminal only, so log files stay readable.
            disable=None if progress and size >= _PROGRESS_MIN_SIZE else True,
            mininterval=1.0,
        )
        with bar:
            _rollout(task, env, policy, rng, env_seed, continuing, raw, bar)
    finally:
        env.close()
    if not raw["terminals"][-1]:
        raw["timeouts"][-1] = True  # the size limit cut this trajectory
    raw["metadata"] = {
        "task": task.name,
        "quality": quality,
        "seed": int(seed),
        "size": int(size),
        "generator": "envs.datasets.collect",
        "generator_version": GENERATOR_VERSION,
        "behaviour": type(policy).__name__,
        # which policy files a trained behaviour came from ("" otherwise); loading compares it
        "policies": dataset_policies_id(task, quality) if factory is None else "",
        "continuing": continuing,
        "max_episode_steps": int(task.max_episode_steps),
    }
    return raw


def _collect_union(
    task: TaskSpec, quality: str, parts: tuple[str, ...], size: int, seed: int, progress: bool
) -> RawData:
    """A union quality: the datasets of `parts` (size split evenly, seeds from
    `union_part_seeds`), concatenated.

    Each part's last step is a trajectory end, so no trajectory crosses a part boundary.
    """
    require_quality(quality, task)
    sizes = [size // len(parts) + (i < size % len(parts)) for i in range(len(parts))]
    seeds = union_part_seeds(seed, len(parts))
    pieces = [
        collect_task(task, p, n, s, progress) for p, n, s in zip(parts, sizes, seeds, strict=True)
    ]
    raw: RawData = {
        k: np.concatenate([piece[k] for piece in pieces]) for k in pieces[0] if k != "metadata"
    }
    raw["metadata"] = {
        **pieces[0]["metadata"],
        "quality": quality,
        "size": int(size),
        "behaviour": "+".join(piece["metadata"]["behaviour"] for piece in pieces),
        "seed": int(seed),
        "parts": ",".join(f"{p}:{n}" for p, n in zip(parts, sizes, strict=True)),
        "part_seeds": ",".join(str(s) for s in seeds),
    }
    return raw


def _rollout(
    task: TaskSpec,
    env: gym.Env,
    policy: Any,
    rng: np.random.Generator,
    env_seed: int,
    continuing: bool,
    raw: RawData,
    bar: tqdm,
) -> None:
    """Fill the arrays of `raw` in place with len(raw["rewards"]) simulator steps."""
    obs, _ = env.reset(seed=env_seed)
    obs = np.asarray(obs, np.float32)
    _start_segment(policy, obs, rng)
    goals = raw.get("infos/goal")
    segment_steps = 0
    for i in range(len(raw["rewards"])):
        action = np.clip(np.asarray(policy(obs, rng), np.float32), -1.0, 1.0)
        if goals is not None:
            goals[i] = policy.goal
        next_obs, reward, terminated, truncated, _ = env.step(action)
        next_obs = np.asarray(next_obs, np.float32)
        segment_steps += 1
        raw["observations"][i] = obs
        raw["actions"][i] = action
        raw["rewards"][i] = reward
        raw["next_observations"][i] = next_obs
        # A state that is both terminal and at the time limit is terminal: no bootstrapping.
        raw["terminals"][i] = terminated
        if continuing and not terminated:
            cut = (
                _segment_done(policy, next_obs)
                or segment_steps >= task.max_episode_steps
                or truncated
            )
            # Keep the run going (no reset) unless the time limit cannot be restarted.
            reset = cut and not restart_time_limit(env) and bool(truncated)
        else:
            cut = terminated or truncated
            reset = cut
        raw["timeouts"][i] = cut and not terminated
        obs = np.asarray(env.reset()[0], np.float32) if reset else next_obs
        if cut:
            segment_steps = 0
            _start_segment(policy, obs, rng)
        if (i + 1) % _PROGRESS_CHUNK == 0:
            bar.update(_PROGRESS_CHUNK)
    bar.update(len(raw["rewards"]) % _PROGRESS_CHUNK)


def collect(task_name: str, quality: str, size: int, seed: int, progress: bool = True) -> RawData:
    """Collect `size` steps of `quality` data for the named task (see collect_task)."""
    return collect_task(get_task(task_name), quality, size, seed, progress)
