"""Reference returns for the D4RL normalised score, 100 * (R - min) / (max - min).

Locomotion values are D4RL's `<env>-random-v0` references that every -v2 dataset of an environment
uses; maze2d values are the sparse -v1 references; AntMaze's return is 0 or 1 (episodes end on
success), so its score is the success rate; dm_control returns lie in [0, 1000] (states or
pixels).
Source: Farama-Foundation/D4RL d4rl/infos.py and d4rl/pointmaze/__init__.py.
"""

from __future__ import annotations

REF_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "halfcheetah": (-280.178953, 12135.0),
    "ant": (-325.6, 3879.7),
    "maze2d-umaze": (23.85, 161.86),
    "maze2d-medium": (13.13, 277.39),
    "maze2d-large": (6.7, 273.99),
    "antmaze-umaze": (0.0, 1.0),
    "antmaze-medium": (0.0, 1.0),
    "antmaze-large": (0.0, 1.0),
    "walker-walk": (0.0, 1000.0),
    "cheetah-run": (0.0, 1000.0),
    "cartpole-swingup": (0.0, 1000.0),
}
# Action repeat 2 sums the rewards, so returns still lie in [0, 1000], from states or pixels.
for _name in ("walker-walk", "cheetah-run", "cartpole-swingup"):
    for _suffix in ("-ar2", "-pixels", "-pixels84"):
        REF_SCORES[_name + _suffix] = REF_SCORES[_name]


def normalized_score(task_name: str, episode_return: float) -> float:
    """D4RL normalised score of one return for a task named as in `envs.TASK_NAMES`."""
    low, high = REF_SCORES[task_name]
    return 100.0 * (episode_return - low) / (high - low)
