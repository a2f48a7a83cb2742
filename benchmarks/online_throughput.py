"""Environment steps per second of the online agents, learning included, with a full replay.

For each of SAC, TD3 and GEM (their `<method>_<task>` presets) the production pieces are timed
as the runner uses them (agent/runner/loop.py): `Collector.collect` steps the real simulator
with the exploring policy for one chunk (`<method>.train_every` steps), `Programs.add` stores
the rows, and the jitted chunk program runs the chunk's gradient steps (SAC and TD3: one per
environment step; GEM: its memory refresh, then two per environment step). The replay is first
filled to its capacity with random transitions, so sampling and GEM's refresh cost what they
cost late in a run. The methods are timed in alternating rounds in one process.

    python benchmarks/online_throughput.py [--task hopper] [--rounds 3] [--chunks 10] [--quick]

Prints ONE JSON object: per method env_steps_per_s and the share of a chunk spent acting; for
SAC and TD3 the FLOPs of one update (XLA's cost analysis of a one-step program; TD3's counts its
delayed actor step every time) and the GFLOP/s their updates achieve; and `matmul_peak_gflops`,
what this machine's XLA reaches on the updates' dominant product (a chain of [256, 256] x
[256, 256] float32 matrix products), which bounds the updates per second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402
from agent import replay as replay_lib  # noqa: E402
from agent.config import load_config  # noqa: E402
from agent.methods import agent_class  # noqa: E402
from agent.programs import Programs  # noqa: E402
from agent.runner.build import new_counters  # noqa: E402
from agent.runner.collector import Collector  # noqa: E402
from agent.runner.sources import EpisodeRunner, online_context, task_spec  # noqa: E402
from benchmarks.matmul_peak import matmul_gflops  # noqa: E402

METHODS = ("sac", "td3", "gem")
FILL_CHUNK = 10_000


def random_rows(spec, rng: np.random.Generator, start: int, count: int) -> dict:
    """`count` rows of random 1000-step episodes, rows start .. start + count - 1."""
    rows = replay_lib.host_rows(spec, count)
    for key in ("observations", "next_observations"):
        for field in rows[key].values():
            field[:] = rng.normal(size=field.shape)
    rows["rewards"][:] = rng.normal(size=rows["rewards"].shape)
    rows["actions"][:] = rng.uniform(-1, 1, rows["actions"].shape)
    rows["masks"][:] = 1.0
    rows["episode_ends"][:] = (start + np.arange(count)) % 1000 == 999
    return rows


def filled_replay(programs: Programs, spec, capacity: int, chunk: int = FILL_CHUNK):
    """A replay holding `capacity` random rows (written `chunk` rows at a time)."""
    rng = np.random.default_rng(0)
    replay = replay_lib.empty(spec, capacity)
    for start in range(0, capacity, chunk):
        replay = programs.add(replay, random_rows(spec, rng, start, min(chunk, capacity - start)))
    return replay


class Setup:
    """One method ready to run chunks: agent, programs, state, full replay, simulator."""

    def __init__(self, method: str, task: str, quick: bool) -> None:
        cfg = load_config([f"{method}_{task}", *(["debug"] if quick else [])])
        spec = task_spec(envs.get_task(task))
        self.agent = agent_class(method)(cfg, spec, online_context(envs.get_task(task), spec))
        self.programs = Programs(self.agent)
        self.state = self.agent.init(jax.random.PRNGKey(0), spec)
        self.replay = filled_replay(self.programs, spec, self.agent.replay_capacity)
        self.collector = Collector(self.programs, spec, seed=0)
        self.runner = EpisodeRunner(cfg, new_counters())
        self.step = cfg[method].learning_starts  # the learning phase
        self.phase = self.agent.phase(self.step)
        self.program = self.programs.chunk(self.phase, self.agent.updates_per_chunk)
        self.updates = 0

    def chunk(self) -> tuple[float, float]:
        """One chunk; -> (seconds acting, seconds learning)."""
        n = self.agent.env_steps_per_chunk
        start = time.perf_counter()
        rows = self.collector.collect(self.runner, self.state, self.step, n)
        acted = time.perf_counter()
        self.replay = self.programs.add(self.replay, rows)
        rng = jax.random.PRNGKey(0)
        self.state, _ = self.program(self.state, self.replay, rng, self.updates)
        jax.block_until_ready(self.state)
        self.step += n
        self.updates += self.agent.updates_per_chunk
        return acted - start, time.perf_counter() - acted


def flops_per_update(setup: Setup) -> float:
    """FLOPs of one gradient step: XLA's cost analysis of a one-step chunk program."""
    program = setup.programs.chunk(setup.phase, 1)
    compiled = program.lower(setup.state, setup.replay, jax.random.PRNGKey(0), 0).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="hopper")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=10, help="chunks per method per round")
    parser.add_argument("--quick", action="store_true", help="debug sizes (smoke run)")
    args = parser.parse_args()
    peak = matmul_gflops(256, 256, 200)  # first, before the replays fill memory
    setups = {m: Setup(m, args.task, args.quick) for m in METHODS}
    for setup in setups.values():
        setup.chunk()  # compiles
    acting = {m: 0.0 for m in METHODS}
    learning = {m: 0.0 for m in METHODS}
    for _ in range(args.rounds):
        for method, setup in setups.items():
            for _ in range(args.chunks):
                a, b = setup.chunk()
                acting[method] += a
                learning[method] += b
    out = {"task": args.task, "backend": jax.default_backend(), "quick": args.quick}
    for method, setup in setups.items():
        steps = args.rounds * args.chunks * setup.agent.env_steps_per_chunk
        total = acting[method] + learning[method]
        out[method] = {
            "replay_rows": setup.agent.replay_capacity,
            "env_steps_per_chunk": setup.agent.env_steps_per_chunk,
            "updates_per_chunk": setup.agent.updates_per_chunk,
            "env_steps_per_s": steps / total,
            "acting_share": acting[method] / total,
        }
        if method in ("sac", "td3"):  # GEM's one-step program would include a memory refresh
            flops = flops_per_update(setup)
            updates = args.rounds * args.chunks * setup.agent.updates_per_chunk
            out[method]["gflop_per_update"] = flops / 1e9
            out[method]["update_gflops_achieved"] = flops * updates / learning[method] / 1e9
    out["matmul_peak_gflops"] = peak
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
