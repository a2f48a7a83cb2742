"""The loop's schedule: chunks, the intervals they must divide, and the phases ahead.

A chunk is what one compiled program runs between two host-side looks at the run: offline
`train.updates_per_call` gradient steps (cut where a phase or the run ends), online the
`env_steps_per_chunk` environment steps the agent declares. Logging, evaluation, checkpoints and
the agent's own `chunk_aligned` intervals happen only between chunks, so each must be a whole
number of them.
"""

from __future__ import annotations

from agent.config import Config, ConfigError
from agent.protocol import Agent


def check_schedule(cfg: Config, agent: Agent | None = None) -> None:
    """Every interval must be a whole number of chunks; without `agent` (offline, before its
    data is loaded) only the runner's own intervals are checked."""
    online = agent is not None and agent.online
    if online:
        chunk, unit = agent.env_steps_per_chunk, f"{cfg.method}'s environment steps per chunk"
    else:
        chunk, unit = cfg.train.updates_per_call, "train.updates_per_call"
    intervals = {f"train.{k}": cfg.train[k] for k in ("steps", "log_every", "eval_every")}
    intervals["train.checkpoint_every"] = cfg.train.checkpoint_every
    intervals["eval.video_every"] = cfg.eval.video_every
    if agent is not None:
        if agent.snapshot_every:
            intervals[f"{cfg.method}.snapshot_every"] = agent.snapshot_every
        intervals.update(agent.chunk_aligned())
    for key, value in intervals.items():
        if value % chunk:
            raise ConfigError(f"{key}={value} must be a multiple of {unit}={chunk}")


def chunk_length(cfg: Config, agent: Agent, step: int, phase: str) -> int:
    """updates_per_call steps from `step`, cut where the phase or the run ends."""
    length = min(cfg.train.updates_per_call, cfg.train.steps - step)
    for i in range(1, length):
        if agent.phase(step + i) != phase:
            return i
    return length


def crossed(step: int, length: int, every: int) -> bool:
    """True when the chunk (step - length, step] reached a multiple of `every` (0: never)."""
    return bool(every) and step // every > (step - length) // every


def steps_per_phase(agent: Agent, start: int, total: int, stride: int) -> dict[str, int]:
    """Steps of each phase in [start, total), in the order they come, from the phase at every
    `stride`-th step (stretched to at most 2000 looks; an estimate for the ETA)."""
    stride = max(stride, (total - start) // 2000, 1)
    counts: dict[str, int] = {}
    for step in range(start, total, stride):
        phase = agent.phase(step)
        counts[phase] = counts.get(phase, 0) + min(stride, total - step)
    return counts


def evaluations_left(cfg: Config, step: int) -> int:
    """Periodic evaluations after `step` and before the end, plus the final one."""
    every, total = cfg.train.eval_every, cfg.train.steps
    periodic = (total - 1) // every - step // every if every else 0
    return max(periodic, 0) + 1
