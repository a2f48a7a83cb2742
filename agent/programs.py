"""The one place where agents' pure functions become compiled programs.

A chunk program is `begin_chunk` followed by `length` `train` steps in a `lax.scan`, jitted once
per (phase, length). The keys are counter-based, so a chunk is a pure function of
(state, replay, rng, step) and a resumed run draws exactly what an uninterrupted one would:

    key of train step t   = fold_in(fold_in(rng, 1), t)
    key of begin_chunk(t) = fold_in(fold_in(rng, 2), t)      (t = steps done before the chunk)

With `seeds=True` every chunk program is vmapped over a leading seed axis of (state, rng) and
the replay is shared: one run trains several seeds (agent/runner/seeds.py); the agents never
see it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from agent import replay as replay_lib
from agent.protocol import Agent

TRAIN_STREAM, CHUNK_STREAM = 1, 2


def step_key(rng: jax.Array, stream: int, step: jax.Array | int) -> jax.Array:
    """The key of draw `step` in `stream` of a run whose root key is `rng`."""
    return jax.random.fold_in(jax.random.fold_in(rng, stream), step)


def _chunk_means(metrics: dict) -> dict:
    """Mean over the chunk's steps; NaN marks a step where the metric was not computed."""
    return jax.tree.map(jnp.nanmean, metrics)


class Programs:
    """Compiled programs of one agent, built on first use and cached."""

    def __init__(self, agent: Agent, batch_sharding: Any = None, seeds: bool = False) -> None:
        self.agent = agent
        self.batch_sharding = batch_sharding  # data parallel: see replay.sharded_batches
        self.seeds = seeds  # states and rngs carry a leading seed axis
        self._chunks: dict[tuple, Callable] = {}
        self._policy = jax.jit(agent.policy, static_argnames=("mode",))
        # Donated: the write is in place instead of a copy of the whole replay per chunk.
        self._add = jax.jit(replay_lib.add, donate_argnums=0)

    def chunk(self, phase: str, length: int, fed: bool = False) -> Callable:
        """(state, replay, rng, step) -> (state, metrics): begin_chunk, then `length` steps.

        fed: `replay` is a batch pytree [length, ...] drawn on the host, one slice per step.
        With seeds: (states [N, ...], replay, rngs [N, 2], step) -> (states, metrics [N])."""
        key = (phase, length, fed)
        if key not in self._chunks:
            if self.seeds:
                chunk = self._make_chunk(phase, length, fed)
                program = jax.jit(vmap_seeds(chunk, self.agent.counter_fields))
            elif self.agent.loops_on_host(phase):
                program = self._make_host_loop(phase, length, fed)
            else:
                program = jax.jit(self._make_chunk(phase, length, fed))
            self._chunks[key] = self._data_parallel(program)
        return self._chunks[key]

    def _data_parallel(self, program: Callable) -> Callable:
        """`program`, traced (on its first call) with device batches sharded over the mesh."""
        if self.batch_sharding is None:
            return program

        def sharded(*args):
            with replay_lib.sharded_batches(self.batch_sharding):
                return program(*args)

        return sharded

    def _make_host_loop(self, phase: str, length: int, fed: bool) -> Callable:
        """The same program as _make_chunk (same keys, same steps) as a Python loop over one
        jitted step: for agents whose steps XLA runs slowly inside a loop (Agent docstring)."""
        agent = self.agent
        begin = jax.jit(
            lambda state, replay, rng, step: agent.begin_chunk(
                phase, state, replay, step_key(rng, CHUNK_STREAM, step)
            )
        )
        one = jax.jit(
            lambda state, source, rng, t: agent.train(
                phase, state, source, step_key(rng, TRAIN_STREAM, t)
            )
        )

        def program(state, replay, rng, step):
            state, begin_metrics = begin(state, None if fed else replay, rng, step)
            steps = []
            for i in range(length):
                if fed:
                    source = replay_lib.FedBatch(jax.tree.map(lambda x, i=i: x[i], replay))
                else:
                    source = replay
                state, metrics = one(state, source, rng, step + i)
                steps.append(metrics)
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *steps)
            return state, {**begin_metrics, **_chunk_means(stacked)}

        return program

    def _make_chunk(self, phase: str, length: int, fed: bool) -> Callable:
        agent = self.agent

        def program(state, replay, rng, step):
            begin_replay = None if fed else replay
            state, begin_metrics = agent.begin_chunk(
                phase, state, begin_replay, step_key(rng, CHUNK_STREAM, step)
            )

            def body(state, xs):
                t, batch = xs
                source = replay_lib.FedBatch(batch) if fed else replay
                return agent.train(phase, state, source, step_key(rng, TRAIN_STREAM, t))

            steps = step + jnp.arange(length)
            state, metrics = jax.lax.scan(body, state, (steps, replay if fed else None))
            return state, {**begin_metrics, **_chunk_means(metrics)}

        return program

    def policy(self, state: Any, carry: Any, obs: dict, mode: str, key: jax.Array) -> tuple:
        """The agent's policy, jitted (one compile per mode and observation batch shape)."""
        return self._policy(self.agent.policy_view(state), carry, obs, mode=mode, key=key)

    def add(self, replay: replay_lib.Replay, rows: dict) -> replay_lib.Replay:
        """replay_lib.add, jitted; consumes `replay` (its buffers are donated): use the result."""
        return self._add(replay, rows)


def vmap_seeds(program: Callable, counter_fields: tuple[str, ...] = ()) -> Callable:
    """`program(state, replay, rng, step)` vmapped over the seed axis of (state, rng), with the
    state's `counter_fields` (step counters the agent declares) passed as ONE value: the seeds
    move in lockstep, so their counters are equal, and a `lax.cond` on a counter stays a branch.
    Batched, its predicate would turn the cond into a select that runs both branches every time
    (VEM's memory refresh at every step instead of every `memory_every`, LEQ's model expansion
    at every chunk)."""
    plain = jax.vmap(program, in_axes=(0, None, 0, None))

    def run(states: Any, replay: Any, rngs: jax.Array, step: jax.Array) -> tuple[Any, dict]:
        fields = getattr(states, "_fields", ())
        shared = [name for name in counter_fields if name in fields]
        if not shared:
            return plain(states, replay, rngs, step)
        seeds = jax.tree.leaves(rngs)[0].shape[0]
        axes = type(states)(*(None if name in shared else 0 for name in fields))
        lockstep = jax.vmap(program, in_axes=(axes, None, 0, None), out_axes=(axes, 0))
        first = {name: getattr(states, name)[0] for name in shared}
        states, metrics = lockstep(states._replace(**first), replay, rngs, step)
        spread = lambda x: jnp.broadcast_to(x, (seeds, *jnp.shape(x)))  # noqa: E731
        again = {name: spread(getattr(states, name)) for name in shared}
        return states._replace(**again), metrics

    return run
