"""The runner: one loop for offline and online training, evaluation, the run folder, the CLI."""

from pathlib import Path

from agent.config import Config
from agent.runner.loop import evaluate_logdir
from agent.runner.loop import train as train_one
from agent.runner.seeds import train_seeds


def train(cfg: Config, logdir: Path, quiet: bool = False) -> dict:
    """One run of `cfg` (runner/loop.py), or its `train.seeds` seeds as one vmapped program
    (runner/seeds.py; `train.shard: seeds` spreads them over the devices)."""
    if cfg.train.seeds > 1 or cfg.train.shard == "seeds":
        return train_seeds(cfg, logdir, quiet)
    return train_one(cfg, logdir, quiet)


__all__ = ["evaluate_logdir", "train", "train_one", "train_seeds"]
