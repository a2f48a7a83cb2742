"""D4RL-style behaviour policies from online training runs (SAC, as D4RL made them; GEM/TD3).

The committed files live in envs/datasets/policy_files/<task>/: actor snapshots
(`actor_<env step>.npz`, float16 weights) and `policies.json`, which records how they were made
(command, seed, environment steps, each snapshot's evaluation return), which kind of actor they
are and which snapshot plays which role. `python run.py export` (envs/datasets/export.py) writes
them from a run folder.

Actor kinds (`policies.json` "actor"; absent means "deterministic", the GEM files before SAC):

* "tanh_gaussian" (SAC): the MLP outputs (mean, raw); log_std = -5 + 3.5 (tanh(raw) + 1);
  the behaviour samples a = tanh(mean + exp(log_std) eps), eps ~ N(0, I), as SAC acts in
  training and as D4RL sampled its SAC behaviour policies.
* "deterministic" (GEM, TD3; with or without LayerNorm, read from the weights): the behaviour
  acts as in training, clip(tanh(MLP(s)) + N(0, 0.1^2), -1, 1).

Behaviours (registered for the tasks that have files):

* "expert": the expert snapshot (the end of the run); "medium": the snapshot whose evaluation
  return is closest to a third of the expert's.
* "medium-replay" / "full-replay": the training run's replay buffer up to the medium / expert
  snapshot, re-enacted. The run acted uniformly at random for its first `learning_starts` steps,
  then snapshot j (in order of env step s_j) stands for the policy of training steps
  (s_{j-1}, s_j]. A dataset of N steps gives each its share, N (s_j - s_{j-1}) / s_last steps
  (the random phase: N learning_starts / s_last), in order, in one continuing simulator run that
  switches policy mid-episode as the training run did.
* "medium-expert" is not a policy: envs/datasets/collect.py builds it as the union of the medium
  and expert datasets (N/2 steps each, each half with its own seed).

Every factory takes an optional `folder` (default: POLICY_DIR, read at call time) holding
<task>/policies.json and the snapshots, so files outside the package (a fresh export) can be
collected from without touching the registry.

The actors run in NumPy, so collection needs neither JAX nor the agent code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from envs.datasets.behaviour import BehaviourFactory, register_behaviour, union_parts
from envs.datasets.errors import DatasetError
from envs.tasks.task import TaskSpec

POLICY_DIR = Path(__file__).resolve().parent / "policy_files"
MANIFEST = "policies.json"
EXPLORATION_NOISE = 0.1  # GEM's and TD3's training exploration std
LAYER_NORM_EPS = 1e-5  # haiku.LayerNorm's default
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # as agent/networks.py (envs never imports agent)
TANH_GAUSSIAN, DETERMINISTIC = "tanh_gaussian", "deterministic"
ACTOR_KINDS = (TANH_GAUSSIAN, DETERMINISTIC)
FAMILIES = ("locomotion", "dmc")  # task families with trained policies; maze2d keeps its planner
REPLAY_SECTIONS = {"medium-replay": "medium_replay", "full-replay": "full_replay"}


class NumpyMLP:
    """out(relu([LN](dense_k(...relu([LN](dense_0(s))))))), weights from a flat npz; LayerNorm
    where the weights have `ln_<i>/scale` (GEM's actor), none otherwise (SAC, TD3).

    Computed in float64 with products summed in a fixed order (no BLAS): BLAS picks its kernel
    by processor (AVX2, AVX-512, ...), and the last-bit differences of float32 kernels grow over
    hundreds of chaotic simulator steps, so datasets collected with a BLAS forward pass differed
    between machines. Returns the float64 output of the last layer.
    """

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        depth = sum(1 for k in w if k.startswith("dense_") and k.endswith("/w"))
        self.layers = [
            (w[f"dense_{i}/w"], w[f"dense_{i}/b"], w.get(f"ln_{i}/scale"), w.get(f"ln_{i}/offset"))
            for i in range(depth)
        ]
        self.out = (w["out/w"], w["out/b"])

    @classmethod
    def load(cls, path: Path) -> NumpyMLP:
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
            if scale is not None:
                mean = x.mean(-1, keepdims=True)
                var = x.var(-1, keepdims=True)
                x = (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * scale + offset
            x = np.maximum(x, 0.0)
        return self._dense(x, *self.out)


class _MlpActor:
    """An actor over one NumpyMLP, built from flat weights or an npz file."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.mlp = NumpyMLP(weights)

    @classmethod
    def load(cls, path: Path):
        with np.load(path) as f:
            return cls({k: f[k] for k in f.files})


class NumpyActor(_MlpActor):
    """A deterministic actor: a = tanh(MLP(s)) (float32)."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.tanh(self.mlp(obs)).astype(np.float32)

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Training-time exploration: clip(tanh(MLP(s)) + N(0, 0.1^2), -1, 1)."""
        return noisy(self(obs), rng)


class TanhGaussianActor(_MlpActor):
    """SAC's actor: (mean, log_std) from the MLP; samples a = tanh(mean + exp(log_std) eps)."""

    def distribution(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, log_std), log_std = LOG_STD_MIN + (LOG_STD_MAX - LOG_STD_MIN)(tanh(raw) + 1)/2."""
        mean, raw = np.split(self.mlp(obs), 2, axis=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (np.tanh(raw) + 1.0)
        return mean, log_std

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The evaluation action tanh(mean) (float32)."""
        return np.tanh(self.distribution(obs)[0]).astype(np.float32)

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A sample of the tanh-Gaussian, as SAC acts in training (float32)."""
        mean, log_std = self.distribution(obs)
        eps = rng.standard_normal(mean.shape)
        return np.tanh(mean + np.exp(log_std) * eps).astype(np.float32)


def load_actor(path: Path, kind: str) -> NumpyActor | TanhGaussianActor:
    """The NumPy actor of `kind` (ACTOR_KINDS) with the weights in `path`."""
    if kind == TANH_GAUSSIAN:
        return TanhGaussianActor.load(path)
    if kind == DETERMINISTIC:
        return NumpyActor.load(path)
    raise DatasetError(f"{path.parent / MANIFEST}: unknown actor kind '{kind}' ({ACTOR_KINDS})")


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


def policies_id(task_name: str, folder: Path | None = None) -> str:
    """A short hash of `task_name`'s policies.json: datasets record it, so that a cached dataset
    built from other policy files is rebuilt instead of reused."""
    path = _folder(folder) / task_name / MANIFEST
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def dataset_policies_id(task: TaskSpec, quality: str) -> str:
    """The policies_id a `quality` dataset of `task` is built from now ("" when the quality is
    not a trained behaviour, e.g. random, or a union of none)."""
    parts = union_parts(quality) or (quality,)
    trained = any(part in TRAINED_FACTORIES for part in parts)
    return policies_id(task.name) if trained and task.family in FAMILIES else ""


def actor_kind(manifest: dict[str, Any]) -> str:
    """The manifest's actor kind ("deterministic" for files written before SAC)."""
    return manifest.get("actor", DETERMINISTIC)


class SnapshotBehaviour:
    """One snapshot, acting as in training (a tanh-Gaussian sample, or the noisy action)."""

    def __init__(self, path: Path, kind: str) -> None:
        self.actor = load_actor(path, kind)

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.actor.act(obs, rng)


class ReplayBehaviour:
    """A replay schedule (module docstring): random, then snapshots by their training share.

    `section` is the manifest entry ("medium_replay" or "full_replay"). `prepare(size)` (called
    by the collector before the rollout) turns the training shares into step counts for a
    dataset of `size` steps; each call then acts with the current segment.
    """

    def __init__(
        self, folder: Path, manifest: dict[str, Any], act_dim: int, section: str = "medium_replay"
    ) -> None:
        if section not in manifest:
            raise DatasetError(f"{folder / MANIFEST}: no '{section}' entry (export it again)")
        replay = manifest[section]
        self.act_dim = act_dim
        self.random_steps = int(replay["random_steps"])
        self.segments = [(int(s["stop"]), folder / s["file"]) for s in replay["segments"]]
        kind = actor_kind(manifest)
        self.actors = [load_actor(path, kind) for _, path in self.segments]
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
        return self.actors[min(index - 1, len(self.actors) - 1)].act(obs, rng)


def _folder(folder: Path | None) -> Path:
    """`folder`, or POLICY_DIR as it is at call time (tests point it elsewhere)."""
    return Path(folder) if folder is not None else POLICY_DIR


def snapshot_factory(role: str) -> BehaviourFactory:
    """The factory of the "expert" / "medium" behaviour: the manifest's `role` snapshot."""

    def factory(task: TaskSpec, env: gym.Env, seed: int, folder: Path | None = None):
        root = _folder(folder)
        manifest = read_manifest(task.name, root)
        return SnapshotBehaviour(root / task.name / manifest[role]["file"], actor_kind(manifest))

    return factory


def replay_factory(quality: str) -> BehaviourFactory:
    """The factory of the "medium-replay" / "full-replay" behaviour (see ReplayBehaviour)."""
    section = REPLAY_SECTIONS[quality]

    def factory(task: TaskSpec, env: gym.Env, seed: int, folder: Path | None = None):
        root = _folder(folder)
        manifest = read_manifest(task.name, root)
        return ReplayBehaviour(root / task.name, manifest, task.act_dim, section)

    return factory


# quality -> factory(task, env, seed, folder=None) of every trained behaviour
TRAINED_FACTORIES: dict[str, BehaviourFactory] = {
    "medium": snapshot_factory("medium"),
    "expert": snapshot_factory("expert"),
    "medium-replay": replay_factory("medium-replay"),
    "full-replay": replay_factory("full-replay"),
}


def has_policies(task: TaskSpec, folder: Path | None = None) -> bool:
    """True when `folder` (default POLICY_DIR, looked up at call time) has `task`'s manifest."""
    return (_folder(folder) / task.name / MANIFEST).is_file()


def has_full_replay(task: TaskSpec, folder: Path | None = None) -> bool:
    """True when `task`'s manifest has a full-replay schedule (SAC exports have one)."""
    return has_policies(task, folder) and "full_replay" in read_manifest(task.name, folder)


def register_trained_policies() -> None:
    """Register medium / expert / medium-replay / full-replay for the tasks with policy files."""
    for quality, factory in TRAINED_FACTORIES.items():
        when = has_full_replay if quality == "full-replay" else has_policies
        register_behaviour(quality, factory, families=FAMILIES, when=when)


register_trained_policies()
