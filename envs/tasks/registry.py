"""The table of tasks: name -> TaskSpec, and the functions that build their environments.

Simulator modules are imported inside the builders, so looking a task up stays cheap and
dm_control is imported only when a dm_control task is made.
"""

from __future__ import annotations

import functools

import gymnasium as gym

from envs.tasks.dmc import REPEAT_SUFFIX
from envs.tasks.dmc_pixels import IMAGE_SIZE, PIXEL84_SUFFIX, PIXEL_SUFFIX
from envs.tasks.scores import REF_SCORES
from envs.tasks.task import TaskSpec, TerminationFn
from envs.tasks.termination import (
    ANTMAZE_GOAL_CENTERS,
    ant_termination,
    halfcheetah_termination,
    hopper_termination,
    make_antmaze_termination,
    never_terminates,
    walker2d_termination,
)


class UnknownTaskError(KeyError):
    """Raised for a task name that is not in TASK_NAMES."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0])


def _build(family: str, name: str, seed: int | None = None, render: bool = False, **kwargs):
    """Build the env of `name`; a given seed is applied through a first `reset(seed=seed)`."""
    if family == "locomotion":
        from envs.tasks.locomotion import make_locomotion

        env = make_locomotion(name, render=render, **kwargs)
    elif family == "maze2d":
        from envs.tasks.maze2d import make_maze2d

        env = make_maze2d(name, render=render, **kwargs)
    elif family == "antmaze":
        from envs.tasks.antmaze import make_antmaze

        env = make_antmaze(name, render=render, **kwargs)
    elif family == "dmc":
        from envs.tasks.dmc import make_dmc

        env = make_dmc(name, seed=seed, render=render, **kwargs)
    elif family == "dmc_pixels":
        from envs.tasks.dmc_pixels import make_dmc_pixels

        env = make_dmc_pixels(name, seed=seed, **kwargs)
    else:
        raise ValueError(f"unknown task family {family!r}")
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def _spec(
    name: str,
    family: str,
    obs_dim: int,
    act_dim: int,
    steps: int,
    termination_fn: TerminationFn,
    image_shape: tuple[int, int, int] | None = None,
) -> TaskSpec:
    low, high = REF_SCORES[name]
    return TaskSpec(
        name=name,
        family=family,
        obs_dim=obs_dim,
        act_dim=act_dim,
        max_episode_steps=steps,
        ref_min_score=low,
        ref_max_score=high,
        termination_fn=termination_fn,
        make=functools.partial(_build, family, name),
        image_shape=image_shape,
    )


def _all_specs() -> dict[str, TaskSpec]:
    never = never_terminates
    centers = ANTMAZE_GOAL_CENTERS
    specs = [
        _spec("hopper", "locomotion", 11, 3, 1000, hopper_termination),
        _spec("walker2d", "locomotion", 17, 6, 1000, walker2d_termination),
        _spec("halfcheetah", "locomotion", 17, 6, 1000, halfcheetah_termination),
        _spec("ant", "locomotion", 111, 8, 1000, ant_termination),
        _spec("maze2d-umaze", "maze2d", 4, 2, 300, never),
        _spec("maze2d-medium", "maze2d", 4, 2, 600, never),
        _spec("maze2d-large", "maze2d", 4, 2, 800, never),
    ]
    for name, steps in (("antmaze-umaze", 700), ("antmaze-medium", 1000), ("antmaze-large", 1000)):
        fn = make_antmaze_termination(centers[name])
        specs.append(_spec(name, "antmaze", 29, 8, steps, fn))
    specs += [
        _spec("walker-walk", "dmc", 24, 6, 1000, never),
        _spec("cheetah-run", "dmc", 17, 6, 1000, never),
        _spec("cartpole-swingup", "dmc", 5, 1, 1000, never),
    ]
    # V-D4RL's action repeat 2 (500 steps): from states (the behaviour policies' twin) and from
    # 64x64 frames (obs_dim is the state's, for the optional state field).
    dmc = [s for s in specs if s.family == "dmc"]
    specs += [
        _spec(f"{s.name}{REPEAT_SUFFIX}", "dmc", s.obs_dim, s.act_dim, 500, never) for s in dmc
    ]
    for suffix, size in ((PIXEL_SUFFIX, IMAGE_SIZE), (PIXEL84_SUFFIX, 84)):
        image = (size, size, 3)
        specs += [
            _spec(f"{s.name}{suffix}", "dmc_pixels", s.obs_dim, s.act_dim, 500, never, image)
            for s in dmc
        ]
    return {spec.name: spec for spec in specs}


TASKS: dict[str, TaskSpec] = _all_specs()
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(name: str) -> TaskSpec:
    """The TaskSpec of `name`; raises UnknownTaskError (a KeyError) listing the valid names."""
    try:
        return TASKS[name]
    except KeyError:
        valid = ", ".join(TASK_NAMES)
        raise UnknownTaskError(f"unknown task {name!r}; valid names: {valid}") from None


def make_env(
    name: str, seed: int | None = None, render: bool = False, render_size: int = 64
) -> gym.Env:
    """Build the gymnasium env of task `name` (see TaskSpec for the guarantees it gives)."""
    return get_task(name).make(seed=seed, render=render, render_size=render_size)
