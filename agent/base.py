"""What the training loop needs from an agent, whatever the method."""

from __future__ import annotations

from typing import Any, Protocol

import jax
import numpy as np

from agent.replay import Replay


class Agent(Protocol):
    """A method: its state is a pytree with an integer `step` (gradient steps done)."""

    def init_state(self, key: jax.Array) -> Any:
        """Fresh parameters, optimiser states and RNG key."""

    def train_chunk(self, state: Any, replay: Replay) -> tuple[Any, dict]:
        """`updates_per_call` gradient steps in one jitted call; returns mean metrics."""

    def act(self, state: Any, obs: np.ndarray) -> np.ndarray:
        """The deterministic evaluation action for a batch of observations [B, obs_dim]."""
