"""The runner: one loop for offline and online training, evaluation, the run folder, the CLI."""

from agent.runner.loop import evaluate_logdir, train

__all__ = ["evaluate_logdir", "train"]
