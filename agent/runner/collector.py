"""Acting in the training simulator (online methods): the rows of one chunk."""

from __future__ import annotations

import jax
import numpy as np

from agent import replay as replay_lib
from agent.programs import Programs
from agent.protocol import EXPLORE, WARMUP, Spec
from agent.runner.sources import EpisodeRunner

EXPLORE_SALT = 0x6E3  # exploration keys: fold_in(fold_in(PRNGKey(seed), salt), env step)


class Collector:
    """Uniform random actions in the WARMUP phase, else the agent's exploring policy; the key of
    env step t is fold_in(fold_in(PRNGKey(seed), salt), t)."""

    def __init__(self, programs: Programs, spec: Spec, seed: int) -> None:
        self.programs, self.spec = programs, spec
        root = jax.random.fold_in(jax.random.PRNGKey(seed), EXPLORE_SALT)
        self.key = jax.jit(lambda t: jax.random.fold_in(root, t))
        self.random_action = jax.jit(
            lambda t: jax.random.uniform(
                jax.random.fold_in(root, t), (spec.act_dim,), minval=-1.0, maxval=1.0
            )
        )

    def collect(self, runner: EpisodeRunner, state, step: int, count: int) -> dict:
        """`count` environment steps from env step `step`, as host rows in the replay layout."""
        agent = self.programs.agent
        rows = replay_lib.host_rows(self.spec, count)
        for i in range(count):
            t = step + i
            if agent.phase(t) == WARMUP:
                action = self.random_action(t)
            else:
                obs = {k: v[None] for k, v in runner.obs.items()}
                action = self.programs.policy(state, None, obs, EXPLORE, self.key(t))[1][0]
            runner.step(np.asarray(action), rows, i)
        return rows
