"""The runner: one loop for offline and online training, one seed or several vmapped seeds,
evaluation, the run folder, the CLI.

    build.py       the agent with its data and world model; the RunState; restoring it
    loop.py        `train`: the training loop, its evaluations, reports and checkpoints
    collector.py   acting in the simulator (online methods)
    seeds.py       several seeds in one vmapped program
    run_logs.py    where metrics go (per seed and their mean)
    progress.py    the ETA of the phases ahead, the world-model fit's progress lines
    run_folder.py  a run rebuilt from its folder: `run.py eval`
"""

from agent.runner.loop import train
from agent.runner.run_folder import evaluate_logdir

__all__ = ["evaluate_logdir", "train"]
