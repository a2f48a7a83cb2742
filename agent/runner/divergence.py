"""Stop a run at its first non-finite value, before anything is evaluated or saved from it.

Checked on the host at every log step (the metrics are fetched then anyway: losses, gradient
norms) and on the device before every evaluation and checkpoint (one reduction over the state), so
no checkpoint ever holds NaN and the last one kept is the last finite state.
`jax.debug_nans` remains the tool for finding where a NaN is born.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agent import checkpoint
from agent.failures import Diverged, first_non_finite, first_non_finite_leaf


def _last_checkpoint(directory: Path) -> str:
    steps = checkpoint.checkpoint_steps(directory)
    if not steps:
        return "no checkpoint was written before it"
    return f"the last finite checkpoint is {checkpoint.checkpoint_path(directory, steps[-1]).name}"


def check_metrics(step: int, metrics: Mapping, checkpoints: Path) -> None:
    """Raise `Diverged` naming the first NaN or infinite metric logged at `step`."""
    found = first_non_finite(metrics)
    if found is not None:
        key, value = found
        raise Diverged(
            f"diverged at step {step}: {key} is {value}; {_last_checkpoint(checkpoints)}"
        )


def check_state(step: int, state, checkpoints: Path) -> None:
    """Raise `Diverged` naming the first leaf of the agent's state that holds NaN or Inf."""
    leaf = first_non_finite_leaf(state)
    if leaf is not None:
        raise Diverged(
            f"diverged at step {step}: the agent's state holds NaN or Inf (first: {leaf}); "
            f"{_last_checkpoint(checkpoints)}"
        )
