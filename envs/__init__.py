"""Environments: the task table, simulators in D4RL's observation layouts, scores, terminations."""

import os

# Rendering without a display needs an OpenGL platform chosen before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")


def _drop_adroit_notice() -> None:
    """gymnasium-robotics prints a notice about its Adroit envs (unused here) on every import."""
    try:
        from farama_notifications import notifications
    except ImportError:
        return
    notifications.pop("gymnasium_robotics", None)


_drop_adroit_notice()

from envs.registry import TASK_NAMES, UnknownTaskError, get_task, make_env  # noqa: E402
from envs.task import TaskSpec  # noqa: E402

__all__ = ["TASK_NAMES", "TaskSpec", "UnknownTaskError", "get_task", "make_env"]
