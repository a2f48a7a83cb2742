"""Environments and offline data, in two subpackages:

* `envs.tasks`: the task table, simulators in D4RL's observation layouts, scores, terminations;
* `envs.datasets`: dataset formats (D4RL HDF5, Minari), preprocessing, behaviour policies and
  collection, and `load_dataset`. It may import `envs.tasks`, never the reverse.

This package re-exports the task API (`get_task`, `make_env`, ...). Nothing here imports `agent`.
"""

from envs.tasks.rendering import select_gl_platform

# Rendering without a display needs an OpenGL platform chosen before mujoco is first imported.
select_gl_platform()


def _drop_adroit_notice() -> None:
    """gymnasium-robotics prints a notice about its Adroit envs (unused here) on every import."""
    try:
        from farama_notifications import notifications
    except ImportError:
        return
    notifications.pop("gymnasium_robotics", None)


_drop_adroit_notice()

from envs.tasks import TASK_NAMES, TaskSpec, UnknownTaskError, get_task, make_env  # noqa: E402

__all__ = ["TASK_NAMES", "TaskSpec", "UnknownTaskError", "get_task", "make_env"]
