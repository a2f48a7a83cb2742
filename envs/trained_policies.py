"""D4RL-style behaviour policies from GEM training runs: medium, expert, medium-replay.

The committed files live in envs/policy_files/<task>/: actor snapshots (`actor_<env step>.npz`,
float16 weights of GEM's LayerNorm actor) and `policies.json`, which records how they were made
(command, seed, environment steps, each snapshot's evaluation return) and which snapshot plays
which role. `python -m envs.trained_policies export` writes them from a run folder.

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
* "medium-expert" is not a policy: envs/collect.py builds it as the union of the medium and
  expert datasets (N/2 steps each, same seed).

The actor runs in NumPy (float32), so collection needs neither JAX nor the agent code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from envs.behaviour import register_behaviour
from envs.errors import DatasetError
from envs.task import TaskSpec

POLICY_DIR = Path(__file__).resolve().parent / "policy_files"
MANIFEST = "policies.json"
EXPLORATION_NOISE = 0.1  # GEM's training exploration std (algorithms.md §5.3)
LAYER_NORM_EPS = 1e-5  # haiku.LayerNorm's default
MAX_REPLAY_SNAPSHOTS = 10


class NumpyActor:
    """a = tanh(out(relu(LN(dense_k(...relu(LN(dense_0(s)))))))), weights from a flat npz."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        w = {k: np.asarray(v, np.float32) for k, v in weights.items()}
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

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, np.float32)
        for w, b, scale, offset in self.layers:
            x = x @ w + b
            mean = x.mean(-1, keepdims=True)
            var = x.var(-1, keepdims=True)
            x = np.maximum((x - mean) / np.sqrt(var + LAYER_NORM_EPS) * scale + offset, 0.0)
        return np.tanh(x @ self.out[0] + self.out[1])


def noisy(action: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training-time exploration: clip(a + N(0, 0.1^2), -1, 1)."""
    noise = rng.normal(0.0, EXPLORATION_NOISE, size=action.shape)
    return np.clip(action + noise, -1.0, 1.0).astype(np.float32)


def read_manifest(task_name: str, folder: Path | None = None) -> dict[str, Any]:
    """The policies.json of `task_name` (folder default: POLICY_DIR, read at call time)."""
    path = (folder or POLICY_DIR) / task_name / MANIFEST
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


def _role_factory(role: str):
    def factory(task: TaskSpec, env: gym.Env, seed: int):
        manifest = read_manifest(task.name)
        return SnapshotBehaviour(POLICY_DIR / task.name / manifest[role]["file"])

    return factory


def _replay_factory(task: TaskSpec, env: gym.Env, seed: int):
    return ReplayBehaviour(POLICY_DIR / task.name, read_manifest(task.name), task.act_dim)


def has_policies(task: TaskSpec) -> bool:
    """True when POLICY_DIR holds a manifest for `task` (looked up at call time)."""
    return (POLICY_DIR / task.name / MANIFEST).is_file()


def register_trained_policies() -> None:
    """Register medium / expert / medium-replay for the tasks with policy files."""
    families = ("locomotion", "dmc")  # maze2d keeps its planner "expert"
    register_behaviour("medium", _role_factory("medium"), families=families, when=has_policies)
    register_behaviour("expert", _role_factory("expert"), families=families, when=has_policies)
    register_behaviour("medium-replay", _replay_factory, families=families, when=has_policies)


# ------------------------------------------------------------------------------------------
# Export from a GEM run folder


def _eval_returns(run: Path) -> dict[int, float]:
    """Evaluation return per env step from the run's metrics.jsonl (the last entry wins)."""
    returns = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "eval/return" in entry:
            returns[int(entry["step"])] = float(entry["eval/return"])
    return returns


def select_snapshots(
    steps: list[int], returns: dict[int, float], learning_starts: int
) -> tuple[int, int, list[int]]:
    """(expert step, medium step, replay snapshot steps) from the evaluated snapshots.

    expert = the last snapshot; medium = the earlier snapshot whose return is closest to a third
    of the expert's; replay = at most MAX_REPLAY_SNAPSHOTS trained snapshots up to medium, evenly
    spaced, the medium one last.
    """
    trained = [s for s in sorted(steps) if s > learning_starts and s in returns]
    if len(trained) < 2:
        raise ValueError("need at least two evaluated snapshots after learning_starts")
    expert = trained[-1]
    target = returns[expert] / 3.0
    medium = min(trained[:-1], key=lambda s: (abs(returns[s] - target), s))
    upto = [s for s in trained if s <= medium]
    picks = np.linspace(0, len(upto) - 1, min(MAX_REPLAY_SNAPSHOTS, len(upto)))
    replay = sorted({upto[int(round(i))] for i in picks})
    return expert, medium, replay


def export(run: Path, task: str, out: Path, command: str) -> dict[str, Any]:
    """Copy the chosen snapshots of GEM run `run` (float16) to out/<task>/, with the manifest."""
    config = _read_yaml(run / "config.yaml")
    snaps = {int(p.stem.split("_")[1]): p for p in (run / "snapshots").glob("actor_*.npz")}
    returns = _eval_returns(run)
    starts = int(config["gem"]["learning_starts"])
    expert, medium, replay = select_snapshots(list(snaps), returns, starts)
    folder = out / task
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("actor_*.npz"):
        old.unlink()
    for step in sorted({expert, medium, *replay}):
        with np.load(snaps[step]) as f:
            weights = {k: f[k].astype(np.float16) for k in f.files}
        np.savez_compressed(folder / snaps[step].name, **weights)

    def entry(step: int) -> dict[str, Any]:
        return {"file": snaps[step].name, "env_step": step, "eval_return": returns[step]}

    manifest = {
        "task": task,
        "made_by": {
            "command": command,
            "seed": config["seed"],
            "method": "gem" if config["gem"]["memory"] else "td3",
            "env_steps": config["train"]["steps"],
            "learning_starts": starts,
            "eval_episodes": config["eval"]["episodes"],
        },
        "expert": entry(expert),
        "medium": entry(medium),
        "medium_replay": {
            "random_steps": starts,
            "segments": [{**entry(s), "stop": s} for s in replay],
        },
        "snapshot_returns": {str(s): returns[s] for s in sorted(snaps) if s in returns},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    manifest["fingerprint"] = fingerprint(task, out)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


FINGERPRINT_STEPS = 300


def fingerprint(task_name: str, folder: Path) -> dict[str, Any]:
    """Reward sums of short collections (FINGERPRINT_STEPS steps, seed 0) from the files in
    `folder`: a test re-collects them, so a changed file, simulator or collector shows."""
    from envs import get_task
    from envs.collect import collect_task

    global POLICY_DIR
    saved, POLICY_DIR = POLICY_DIR, folder
    try:
        sums = {
            quality: float(
                collect_task(get_task(task_name), quality, FINGERPRINT_STEPS, 0, False)[
                    "rewards"
                ].sum()
            )
            for quality in ("medium", "expert", "medium-replay")
        }
    finally:
        POLICY_DIR = saved
    return {"steps": FINGERPRINT_STEPS, "seed": 0, "reward_sums": sums}


def _read_yaml(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m envs.trained_policies",
        description="Export expert / medium / medium-replay snapshots of a GEM run.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write envs/policy_files/<task>/ from a run folder")
    ex.add_argument("--run", type=Path, required=True, help="a GEM run with snapshots/")
    ex.add_argument("--task", required=True)
    ex.add_argument("--out", type=Path, default=POLICY_DIR)
    ex.add_argument("--made-with", default="", help="the training command, for the manifest")
    args = parser.parse_args(argv)
    manifest = export(args.run, args.task, args.out, args.made_with)
    print(json.dumps({k: manifest[k] for k in ("expert", "medium")}, indent=1))
    return 0


register_trained_policies()

if __name__ == "__main__":
    sys.exit(main())
