"""D4RL-style behaviour policies from GEM training runs: medium, expert, medium-replay.

The committed files live in envs/datasets/policy_files/<task>/: actor snapshots
(`actor_<env step>.npz`, float16 weights of GEM's LayerNorm actor) and `policies.json`, which
records how they were made (command, seed, environment steps, each snapshot's evaluation return)
and which snapshot plays which role. `python run.py export` (envs/datasets/export.py) writes them
from a run folder.

Behaviours (registered for the tasks that have files):

* "expert": the snapshot at the end of the run; "medium": the snapshot whose evaluation return
  is closest to a third of the expert's. Both act as in training: clip(pi(s) + N(0, 0.1^2), -1, 1)
  (D4RL sampled its stochastic SAC policies; GEM's actor is deterministic, so the exploration
  noise of training plays that role).
* "medium-replay": the training run's replay buffer up to the medium snapshot, re-enacted. The run
  acted uniformly at random for its first `learning_starts` steps, then snapshot j (in order of
  env step s_j) stands for the policy of training steps (s_{j-1}, s_j]. A dataset of N steps gives
  each its share, N (s_j - s_{j-1}) / s_medium steps (the random phase: N learning_starts /
  s_medium), in order, in one continuing simulator run that switches policy mid-episode as the
  training run did, with the exploration noise of training.
* "medium-expert" is not a policy: envs/datasets/collect.py builds it as the union of the medium
  and expert datasets (N/2 steps each, each half with its own seed).

Every factory takes an optional `folder` (default: POLICY_DIR, read at call time) holding
<task>/policies.json and the snapshots, so files outside the package (a fresh export) can be
collected from without touching the registry.

The actor runs in NumPy (float32), so collection needs neither JAX nor the agent code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from envs.datasets.behaviour import BehaviourFactory, register_behaviour
from envs.datasets.errors import DatasetError
from envs.tasks.task import TaskSpec

POLICY_DIR = Path(__file__).resolve().parent / "policy_files"
MANIFEST = "policies.json"
EXPLORATION_NOISE = 0.1  # GEM's training exploration std (algorithms.md §5.3)
LAYER_NORM_EPS = 1e-5  # haiku.LayerNorm's default


class NumpyActor:
    """a = tanh(out(relu(LN(dense_k(...relu(LN(dense_0(s)))))))), weights from a flat npz.

    Computed in float64 with products summed in a fixed order (no BLAS), then rounded to
    float32: BLAS picks its kernel by processor (AVX2, AVX-512, ...), and the last-bit
    differences of float32 kernels grow over hundreds of chaotic simulator steps, so datasets
    collected with a BLAS forward pass differed between machines.
    """

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        depth = sum(1 for k in w if k.startswith("dense_") and k.endswith("/w"))
        self.layers = [
            (w[f"dense_{i}/w"], w[f"dense_{i}/b"], w[f"ln_{i}/scale"], w[f"ln_{i}/offset"])
            for i in range(depth)
        ]
        self.out = (w["out/w"], w["out/b"])

    @classmethod
    def load(cls, path: Path) -> NumpyActor:
        with np.load(path) as f:
            return cls({k: f[k] for k in f.files})

    @staticmethod
    def _dense(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """x @ w + b, summed over the input axis in index order (bitwise the same everywhere)."""
        return (x[..., :, None] * w).sum(axis=-2) + b

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, np.float32).astype(np.float64)
        for w, b, scale, offset in self.layers:
            x = self._dense(x, w, b)
            mean = x.mean(-1, keepdims=True)
            var = x.var(-1, keepdims=True)
            x = np.maximum((x - mean) / np.sqrt(var + LAYER_NORM_EPS) * scale + offset, 0.0)
        return np.tanh(self._dense(x, *self.out)).astype(np.float32)


def noisy(action: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training-time exploration: clip(a + N(0, 0.1^2), -1, 1)."""
    noise = rng.normal(0.0, EXPLORATION_NOISE, size=action.shape)
    return np.clip(action + noise, -1.0, 1.0).astype(np.float32)


def read_manifest(task_name: str, folder: Path | None = None) -> dict[str, Any]:
    """The policies.json of `task_name` (folder default: POLICY_DIR, read at call time)."""
    path = _folder(folder) / task_name / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path}: no trained behaviour policies for task {task_name}")
    return json.loads(path.read_text())


class SnapshotBehaviour:
    """One snapshot with the exploration noise of training."""

    def __init__(self, path: Path) -> None:
        self.actor = NumpyActor.load(path)

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return noisy(self.actor(obs), rng)


class ReplayBehaviour:
    """The medium-replay schedule (module docstring): random, then snapshots by their share.

    `prepare(size)` (called by the collector before the rollout) turns the training shares into
    step counts for a dataset of `size` steps; each call then acts with the current segment.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], act_dim: int) -> None:
        replay = manifest["medium_replay"]
        self.act_dim = act_dim
        self.random_steps = int(replay["random_steps"])
        self.segments = [(int(s["stop"]), folder / s["file"]) for s in replay["segments"]]
        self.actors = [NumpyActor.load(path) for _, path in self.segments]
        self.total = self.segments[-1][0]
        self.prepare(self.total)

    def prepare(self, size: int) -> None:
        stops = [self.random_steps] + [stop for stop, _ in self.segments]
        # Segment ends in dataset steps; rounding keeps the order and the total exact.
        self.bounds = [round(size * stop / self.total) for stop in stops]
        self.calls = 0

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        index = int(np.searchsorted(self.bounds, self.calls, side="right"))
        self.calls += 1
        if index == 0:
            return rng.uniform(-1.0, 1.0, size=self.act_dim).astype(np.float32)
        actor = self.actors[min(index - 1, len(self.actors) - 1)]
        return noisy(actor(obs), rng)


def _folder(folder: Path | None) -> Path:
    """`folder`, or POLICY_DIR as it is at call time (tests point it elsewhere)."""
    return Path(folder) if folder is not None else POLICY_DIR


def snapshot_factory(role: str) -> BehaviourFactory:
    """The factory of the "expert" / "medium" behaviour: the manifest's `role` snapshot."""

    def factory(task: TaskSpec, env: gym.Env, seed: int, folder: Path | None = None):
        root = _folder(folder)
        manifest = read_manifest(task.name, root)
        return SnapshotBehaviour(root / task.name / manifest[role]["file"])

    return factory


def replay_factory(task: TaskSpec, env: gym.Env, seed: int, folder: Path | None = None):
    """The factory of the "medium-replay" behaviour (see ReplayBehaviour)."""
    root = _folder(folder)
    return ReplayBehaviour(root / task.name, read_manifest(task.name, root), task.act_dim)


# quality -> factory(task, env, seed, folder=None) of every trained behaviour
TRAINED_FACTORIES: dict[str, BehaviourFactory] = {
    "medium": snapshot_factory("medium"),
    "expert": snapshot_factory("expert"),
    "medium-replay": replay_factory,
}


def has_policies(task: TaskSpec, folder: Path | None = None) -> bool:
    """True when `folder` (default POLICY_DIR, looked up at call time) has `task`'s manifest."""
    return (_folder(folder) / task.name / MANIFEST).is_file()


def register_trained_policies() -> None:
    """Register medium / expert / medium-replay for the tasks with policy files."""
    families = ("locomotion", "dmc")  # maze2d keeps its planner "expert"
    for quality, factory in TRAINED_FACTORIES.items():
        register_behaviour(quality, factory, families=families, when=has_policies)


register_trained_policies()
