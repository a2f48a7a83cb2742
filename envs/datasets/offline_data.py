"""The in-memory form of an offline dataset after preprocessing (shared by every method)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.datasets.errors import DatasetError


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

    @property
    def longest_segment(self) -> int:
        """Rows of the longest trajectory segment (0 when empty).

        A segment ends at a row with episode_ends or terminals set, and at the last row: the
        end rule of agent/memory.py's kernels, so this is what a horizon cap sees.
        """
        ends = (np.asarray(self.episode_ends) > 0.5) | (np.asarray(self.terminals) > 0.5)
        if not len(ends):
            return 0
        last = np.flatnonzero(ends[:-1])
        bounds = np.concatenate([[-1], last, [len(ends) - 1]])
        return int(np.diff(bounds).max())


def check_segment_lengths(
    data: OfflineData, max_step: int | None, method: str, end_sentinel: bool = False
) -> None:
    """DatasetError unless no trajectory segment of `data` is longer than `max_step` rows.

    For methods whose memory returns have a horizon cap (VEM / GEM's `max_step`): the uncapped
    memory kernel equals the capped one only when every segment has at most `max_step` rows
    (one more with `end_sentinel`, the sentinel row the official GEM code appends to each
    trajectory, as agent.memory.check_max_step counts it). `method` names the method in
    the message; max_step None = no cap. The one-line message names the dataset file, the
    segment length found and the limit.
    """
    if max_step is None:
        return
    longest = data.longest_segment
    rows = longest + int(end_sentinel)
    if rows > max_step:
        source = data.info.get("path", "the dataset")
        sentinel = " (+1 sentinel row)" if end_sentinel else ""
        raise DatasetError(
            f"{source}: a trajectory segment has {longest} steps{sentinel}, more than {method}'s "
            f"horizon cap max_step={max_step} (the cap is not implemented, so the memory returns "
            f"would differ); use a dataset whose trajectories end (terminal or timeout) within "
            f"{max_step - int(end_sentinel)} steps"
        )
