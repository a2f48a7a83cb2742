"""Where a run's metrics, videos and messages go.

One seed: one Logger in LOGDIR (the progress bar, metrics.jsonl, TensorBoard, videos/).
Vmapped seeds: a quiet Logger per seed in LOGDIR/seed<S>/ (TensorBoard shows the seeds as runs
of the same tags, side by side), and LOGDIR's own Logger with the mean over seeds of every
metric (the std over seeds of the return and score beside it) and the progress bar.
"""

from __future__ import annotations

from pathlib import Path

from agent.logger import Logger
from agent.runner import rundir
from agent.runner.seeds import aggregate, seed_dir


class RunLogs:
    """The run's loggers; seeds=None: one seed, logged in LOGDIR itself."""

    def __init__(
        self, logdir: Path, total: int, step: int, quiet: bool, seeds: list[int] | None = None
    ) -> None:
        folders = [seed_dir(logdir, s) for s in seeds or []]
        for folder in [*folders, logdir]:
            rundir.trim_metrics(folder, step)  # lines of an interrupted run after `step`
        self.main = Logger(logdir, total, initial_step=step, quiet=quiet)
        self.stacked = seeds is not None
        if self.stacked:
            self.seeds = [Logger(f, total, initial_step=step, quiet=True) for f in folders]
        else:
            self.seeds = [self.main]

    def metrics(self, step: int, per_seed: list[dict], shared: dict | None = None) -> None:
        """Seed i's metrics to its log; the run's log gets them too (one seed) or their mean
        over seeds (`aggregate`), with `shared` (e.g. the updates per second of all seeds)."""
        shared = shared or {}
        if not self.stacked:
            self.main.scalars(step, {**per_seed[0], **shared})
            return
        per_seed = [{k: float(v) for k, v in m.items()} for m in per_seed]
        for logger, metrics in zip(self.seeds, per_seed, strict=True):
            logger.scalars(step, metrics)
        self.main.scalars(step, {**aggregate(per_seed), **shared})

    def video(self, step: int, seed_index: int, frames, name: str = "eval/video") -> None:
        self.seeds[seed_index].video(step, frames, name=name)

    def message(self, text: str) -> None:
        self.main.message(text)

    def advance(self, step: int, eta: str | None = None) -> None:
        self.main.advance(step, eta)

    def close(self) -> None:
        for logger in {id(x): x for x in [*self.seeds, self.main]}.values():
            logger.close()
