"""Behaviour policies that generate datasets, registered by dataset quality name.

A *factory* `factory(task_spec, env, seed) -> policy` builds a policy for one collection run;
`env` is the live simulator the collector steps (so a policy may read or steer it, e.g. set the
goal of a maze) and `seed` is an integer derived from the collection seed.

A *policy* is a callable `policy(obs, rng) -> action` with `obs` the flat float32 observation and
`rng` the collector's np.random.Generator (use it for every random choice, so that a dataset is
a function of its seed). The action must lie in [-1, 1]^act_dim. A policy may also define
these optional members, which envs/datasets/collect.py looks up with getattr:

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

Policy qualities trained by GEM (medium, expert, medium-replay) live in
envs/datasets/trained_policies.py and are registered there for the tasks that have committed
snapshot files; a policy with a `prepare(size)` member is told the dataset size before the
rollout (medium-replay's schedule). "medium-expert" is a union quality (`register_union`): the
collector concatenates its parts, each collected with its own seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs.datasets.errors import DatasetError
from envs.tasks.task import TaskSpec

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]
BehaviourFactory = Callable[[TaskSpec, gym.Env, int], Policy]


@dataclass(frozen=True)
class _Entry:
    factory: BehaviourFactory
    families: tuple[str, ...] | None  # None = every task family
    when: Callable[[TaskSpec], bool] | None  # None = every task of those families

    def serves(self, task: TaskSpec) -> bool:
        family_ok = self.families is None or task.family in self.families
        return family_ok and (self.when is None or self.when(task))


_REGISTRY: dict[str, list[_Entry]] = {}  # newest registration first


def register_behaviour(
    quality: str,
    factory: BehaviourFactory,
    *,
    families: Sequence[str] | None = None,
    when: Callable[[TaskSpec], bool] | None = None,
) -> None:
    """Make `quality` available to dataset collection for tasks of `families` (None = all),
    restricted to the tasks for which `when(task)` holds when given (checked at each lookup).

    A quality may be registered several times (maze2d's planner "expert" and the trained
    locomotion "expert"); the newest registration that serves a task wins for it.
    """
    entry = _Entry(
        factory,
        tuple(families) if families is not None else None,
        when,
    )
    _REGISTRY[quality] = [entry, *_REGISTRY.get(quality, [])]


_UNIONS: dict[str, tuple[str, ...]] = {}


def register_union(quality: str, parts: Sequence[str]) -> None:
    """Make `quality` the union of the datasets of `parts` (e.g. medium-expert), available for
    the tasks that have every part. envs/datasets/collect.py splits the size evenly over the
    parts and gives each part its own seed."""
    _UNIONS[quality] = tuple(parts)


def union_parts(quality: str) -> tuple[str, ...] | None:
    """The parts of a union quality, or None for a policy quality."""
    return _UNIONS.get(quality)


def _entry_for(quality: str, task: TaskSpec) -> _Entry | None:
    return next((e for e in _REGISTRY.get(quality, []) if e.serves(task)), None)


def available_qualities(task: TaskSpec) -> list[str]:
    """Sorted names of the qualities that can be collected for `task`."""
    policies = {q for q in _REGISTRY if _entry_for(q, task) is not None}
    unions = {q for q, parts in _UNIONS.items() if set(parts) <= policies}
    return sorted(policies | unions)


def require_quality(quality: str, task: TaskSpec) -> None:
    """DatasetError (listing the available qualities) unless `quality` can be built for `task`."""
    available = available_qualities(task)
    if quality not in available:
        registered = quality in _REGISTRY or quality in _UNIONS
        known = "quality not available" if registered else "unknown quality"
        raise DatasetError(
            f"task {task.name}: {known} '{quality}' (available: {', '.join(available)})"
        )


def make_behaviour(quality: str, task: TaskSpec, env: gym.Env, seed: int) -> Policy:
    """Build the behaviour policy of `quality` for `task`; DatasetError when it is unavailable."""
    require_quality(quality, task)
    return _entry_for(quality, task).factory(task, env, seed)


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
        from envs.tasks.maze2d_planner import WaypointPlanner  # lives with the maze environments

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
        from envs.tasks.maze2d_planner import WaypointPlanner

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
register_union("medium-expert", ("medium", "expert"))
