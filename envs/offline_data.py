"""The in-memory form of an offline dataset after preprocessing (shared by every method)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class OfflineData:
    """Transitions in dataset order, trajectories contiguous.

    All arrays have the same leading length N. `terminals[i]` = 1 stops bootstrapping (a true
    terminal); `timeouts[i]` = 1 marks a truncated final step (bootstrap through it).
    `episode_ends[i]` = 1 where transition i is the last of its trajectory (terminal, timeout, or
    the next stored transition starts elsewhere); the last index is always an end.
    `rewards` are already preprocessed (scaled / shifted); `reward_scale` and `reward_bias` record
    the affine map r_used = reward_scale * r_raw + reward_bias so that a model can apply it too.
    """

    observations: np.ndarray  # float32 [N, obs_dim]
    actions: np.ndarray  # float32 [N, act_dim]
    rewards: np.ndarray  # float32 [N]
    next_observations: np.ndarray  # float32 [N, obs_dim]
    terminals: np.ndarray  # float32 [N]
    timeouts: np.ndarray  # float32 [N]
    episode_ends: np.ndarray  # float32 [N]
    reward_scale: float = 1.0
    reward_bias: float = 0.0
    info: dict = field(default_factory=dict)  # source path, task, quality, raw returns, ...

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def masks(self) -> np.ndarray:
        return 1.0 - self.terminals
