"""Behaviour policies that generate datasets, registered by dataset quality name.

A *factory* `factory(task_spec, env, seed) -> policy` builds a policy for one collection run;
`env` is the live simulator the collector steps (so a policy may read or steer it, e.g. set the
goal of a maze) and `seed` is an integer derived from the collection seed.

A *policy* is a callable `policy(obs, rng) -> action` with `obs` the flat float32 observation and
`rng` the collector's np.random.Generator (use it for every random choice, so that a dataset is
a function of its seed). The action must lie in [-1, 1]^act_dim. A policy may also define
these optional members, which envs/collect.py looks up with getattr:

* `start_segment(obs, rng) -> None`: called whenever a trajectory segment starts (after every
  reset, and at the boundaries of a continuing policy); the maze planner picks a new goal here.
* `continuing: bool` (default False): True for D4RL-maze-style data, one long simulator run that
  is never reset; it is cut into segments (timeouts = 1 on the last step) when `segment_done`
  says so or after max_episode_steps steps.
* `segment_done(next_obs) -> bool`: True when the step just taken ended the segment (goal reached).
* `goal -> np.ndarray`: the current goal; when present the collector stores it as `infos/goal`.

Built in: "random" (uniform actions, every task), "planner" (maze2d only: D4RL's waypoint
controller with action noise, goal resampled on arrival) and "expert" for maze2d (the same
controller driving to the evaluation goal in ordinary reset episodes: the optimal policy of the
evaluation task plus D4RL's action noise; D4RL itself has no such maze2d dataset).

Adding the policy-driven qualities later (medium, medium-replay, expert, medium-expert): write a
factory that loads the trained actor for `task_spec.name` (checkpoint path from the caller's
config, or a fixed per-quality location) and returns `lambda obs, rng: sample(actor, obs, rng)`,
then call `register_behaviour("medium", factory, families=("locomotion", "antmaze", "dmc"))` at
import time of the module that defines it, and import that module before `load_dataset`.
"medium-replay" (the replay buffer of a training run) is not a policy: produce it as a raw dict
and save it with envs.d4rl_hdf5.write_d4rl_hdf5, then load it through the `path` option.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs.errors import DatasetError
from envs.task import TaskSpec

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]
BehaviourFactory = Callable[[TaskSpec, gym.Env, int], Policy]


@dataclass(frozen=True)
class _Entry:
    factory: BehaviourFactory
    families: tuple[str, ...] | None  # None = every task family


_REGISTRY: dict[str, _Entry] = {}


def register_behaviour(
    quality: str, factory: BehaviourFactory, *, families: Sequence[str] | None = None
) -> None:
    """Make `quality` available to dataset collection for tasks of `families` (None = all).

    Registering an existing quality replaces it (so a later issue can override a default).
    """
    _REGISTRY[quality] = _Entry(factory, tuple(families) if families is not None else None)


def available_qualities(task: TaskSpec) -> list[str]:
    """Sorted names of the qualities that can be collected for `task`."""
    return sorted(
        q for q, e in _REGISTRY.items() if e.families is None or task.family in e.families
    )


def require_quality(quality: str, task: TaskSpec) -> None:
    """DatasetError (listing the available qualities) unless `quality` can be built for `task`."""
    available = available_qualities(task)
    if quality not in available:
        known = "unknown quality" if quality not in _REGISTRY else "quality not available"
        raise DatasetError(
            f"task {task.name}: {known} '{quality}' (available: {', '.join(available)})"
        )


def make_behaviour(quality: str, task: TaskSpec, env: gym.Env, seed: int) -> Policy:
    """Build the behaviour policy of `quality` for `task`; DatasetError when it is unavailable."""
    require_quality(quality, task)
    return _REGISTRY[quality].factory(task, env, seed)


# --------------------------------------------------------------------------------------------
# Built-in behaviours


class RandomPolicy:
    """Uniform random actions in [-1, 1]^act_dim (D4RL's "random" datasets)."""

    def __init__(self, act_dim: int) -> None:
        self.act_dim = act_dim

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw one action uniformly from the action box."""
        return rng.uniform(-1.0, 1.0, size=self.act_dim).astype(np.float32)


def _random_factory(task: TaskSpec, env: gym.Env, seed: int) -> Policy:
    return RandomPolicy(task.act_dim)


# D4RL's maze2d generator adds N(0, 0.5^2) to the controller's action with --noisy.
PLANNER_NOISE_STD = 0.5


class PlannerBehaviour:
    """D4RL's maze2d data: the waypoint controller plus action noise, a new goal on arrival.

    Continuing (see the module docstring): the simulator is never reset; a segment ends when the
    planner reaches its goal (or after max_episode_steps) and the next goal is drawn like D4RL's
    `set_target()` (a random free cell + U(-0.1, 0.1)), from the collector's generator.

    The collection goal is the planner's alone (stored as `infos/goal`): the environment keeps
    its evaluation goal. D4RL relabelled its maze2d rewards against that fixed evaluation goal
    (scripts/generation/relabel_maze2d_rewards.py), so the environment's own reward is the right
    label, and being computed on the next state it also avoids D4RL's off-by-one labels.
    """

    continuing = True

    def __init__(self, maze: Any, noise_std: float = PLANNER_NOISE_STD) -> None:
        from envs.maze2d_planner import WaypointPlanner  # lives with the maze environments

        self._maze = maze
        self._planner = WaypointPlanner(maze.layout.walls, noise_std=noise_std)
        self.goal = np.asarray(maze.goal, np.float32)

    def start_segment(self, obs: np.ndarray, rng: np.random.Generator) -> None:
        """Draw a new goal and hand it to the planner."""
        self.goal = np.asarray(self._maze.sample_goal(rng), np.float32)
        self._planner.set_goal(self.goal)

    def segment_done(self, next_obs: np.ndarray) -> bool:
        """True once the particle is at the goal."""
        return self._planner.reached(next_obs)

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The planner's noisy action towards the current goal."""
        return self._planner.act(obs, rng)


class ExpertPlannerBehaviour:
    """Maze2d "expert": the waypoint controller heading for the evaluation goal, with noise.

    Episodic like evaluation (reset to a random cell, run max_episode_steps steps), so the data
    shows the evaluation task solved from everywhere in the maze.
    """

    def __init__(self, maze: Any, noise_std: float = PLANNER_NOISE_STD) -> None:
        from envs.maze2d_planner import WaypointPlanner

        self.goal = np.asarray(maze.goal, np.float32)
        self._planner = WaypointPlanner(maze.layout.walls, noise_std=noise_std)
        self._planner.set_goal(self.goal)

    def start_segment(self, obs: np.ndarray, rng: np.random.Generator) -> None:
        """A reset moved the particle: plan a new path from where it is now."""
        self._planner.reset()

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The planner's noisy action towards the evaluation goal."""
        return self._planner.act(obs, rng)


def _maze(task: TaskSpec, env: gym.Env, quality: str) -> Any:
    maze = env.unwrapped
    if not all(hasattr(maze, name) for name in ("layout", "sample_goal", "goal")):
        raise DatasetError(
            f"task {task.name}: its environment {type(maze).__name__} has no maze layout / "
            f"goal sampler, so the '{quality}' behaviour cannot drive it"
        )
    return maze


def _planner_factory(task: TaskSpec, env: gym.Env, seed: int) -> Policy:
    return PlannerBehaviour(_maze(task, env, "planner"))


def _expert_planner_factory(task: TaskSpec, env: gym.Env, seed: int) -> Policy:
    return ExpertPlannerBehaviour(_maze(task, env, "expert"))


register_behaviour("random", _random_factory)
register_behaviour("planner", _planner_factory, families=("maze2d",))
register_behaviour("expert", _expert_planner_factory, families=("maze2d",))
