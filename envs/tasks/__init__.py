"""Tasks: the task table (registry), simulators in D4RL's observation layouts, reference scores
and termination functions. Nothing here imports `envs.datasets` or `agent`."""

from envs.tasks.registry import TASK_NAMES, UnknownTaskError, get_task, make_env
from envs.tasks.task import TaskSpec

__all__ = ["TASK_NAMES", "TaskSpec", "UnknownTaskError", "get_task", "make_env"]
