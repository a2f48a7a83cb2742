"""Environment steps per second of the online agents, learning included, with a full replay.

For each variant (VARIANTS: SAC, stock TD3, GEM at the paper's settings, GEM with
`gem.refresh_every: 10`, and GEM's TD3 switch `gem.memory: false`; their `<method>_<task>`
presets plus the variant's overrides) the production pieces are timed as the runner uses them
(agent/runner/loop.py): `Collector.collect` steps the real simulator with the exploring policy
for one chunk (`<method>.train_every` steps), `Programs.add` stores
the rows, and the jitted chunk program runs the chunk's gradient steps (SAC and TD3: one per
environment step; GEM: its memory refresh, then two per environment step). The replay is first
filled to its capacity with random transitions, so sampling and GEM's refresh cost what they
cost late in a run. The variants are timed in alternating rounds in one process.

    python benchmarks/online_throughput.py [--task hopper] [--rounds 3] [--chunks 10] [--quick]

Prints ONE JSON object: per variant env_steps_per_s, the share of a chunk spent acting, the
GFLOP of learning per environment step (XLA's cost analysis of one gradient step, counting a
delayed actor step every time, times the gradient steps per environment step; for GEM plus its
refresh: the rows a chunk re-evaluates times the cost of one row's target values, per
environment step; the return kernel's few FLOPs per row are left out), the GFLOP/s learning
achieves (those FLOPs over the seconds spent learning) and its fraction of
`matmul_peak_gflops`, what this machine's XLA reaches in the same run on float32 matrix
products (the faster of a [2048, 2048] square chain and the updates' dominant [256, 256] x
[256, 256] chain, both in `matmul_gflops`); and each variant's wall time per environment step
and achieved GFLOP/s relative to stock TD3's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.allocator import restart_with_huge_pages  # noqa: E402

if __name__ == "__main__":
    restart_with_huge_pages(__file__)  # before JAX loads: as run.py trains

import jax
import numpy as np

import envs  # noqa: E402
from agent import replay as replay_lib  # noqa: E402
from agent.config import load_config  # noqa: E402
from agent.methods import agent_class  # noqa: E402
from agent.programs import Programs  # noqa: E402
from agent.runner.build import new_counters  # noqa: E402
from agent.runner.collector import Collector  # noqa: E402
from agent.runner.sources import EpisodeRunner, online_context, task_spec  # noqa: E402
from benchmarks.matmul_peak import peak_gflops  # noqa: E402

# name: (method, overrides)
VARIANTS = {
    "sac": ("sac", []),
    "td3": ("td3", []),
    "gem": ("gem", []),
    "gem_refresh_every_10": ("gem", ["gem.refresh_every=10"]),
    "gem_td3_switch": ("gem", ["gem.memory=false", "gem.alpha=1.0"]),
}
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

    def __init__(self, method: str, overrides: list[str], task: str, quick: bool) -> None:
        cfg = load_config([f"{method}_{task}", *(["debug"] if quick else [])], overrides)
        self.cfg = cfg
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


def program_flops(fn, *args) -> float:
    """FLOPs of one call of `fn` (XLA's cost analysis of its compiled program)."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def flops_per_env_step(setup: Setup) -> float:
    """Learning FLOPs per environment step: gradient steps, plus GEM's value refresh."""
    agent = setup.agent
    key = jax.random.PRNGKey(0)
    step = program_flops(
        lambda s, r, k: agent.train(setup.phase, s, r, k), setup.state, setup.replay, key
    )
    flops = step * agent.updates_per_chunk
    g = setup.cfg.gem
    if setup.cfg.method == "gem" and g.memory:
        rows = 1000
        obs = jax.numpy.zeros((rows, agent.spec.flat_obs_dim))
        eps = jax.numpy.zeros((rows, agent.spec.act_dim))
        one_row = (
            program_flops(
                lambda s, o, e: agent.target_twin_values(s, o, eps=e), setup.state, obs, eps
            )
            / rows
        )
        flops += agent.rows_per_refresh * one_row
    return flops / agent.env_steps_per_chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="hopper")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=10, help="chunks per method per round")
    parser.add_argument("--quick", action="store_true", help="debug sizes (smoke run)")
    args = parser.parse_args()
    peak, rates = peak_gflops()  # first, before the replays fill memory
    setups = {
        name: Setup(method, overrides, args.task, args.quick)
        for name, (method, overrides) in VARIANTS.items()
    }
    for setup in setups.values():
        setup.chunk()  # compiles
    acting = dict.fromkeys(setups, 0.0)
    learning = dict.fromkeys(setups, 0.0)
    for _ in range(args.rounds):
        for name, setup in setups.items():
            for _ in range(args.chunks):
                a, b = setup.chunk()
                acting[name] += a
                learning[name] += b
    out = {"task": args.task, "backend": jax.default_backend(), "quick": args.quick}
    for name, setup in setups.items():
        steps = args.rounds * args.chunks * setup.agent.env_steps_per_chunk
        total = acting[name] + learning[name]
        flops = flops_per_env_step(setup)
        achieved = flops * steps / learning[name] / 1e9
        out[name] = {
            "overrides": VARIANTS[name][1],
            "replay_rows": setup.agent.replay_capacity,
            "env_steps_per_chunk": setup.agent.env_steps_per_chunk,
            "updates_per_chunk": setup.agent.updates_per_chunk,
            "env_steps_per_s": steps / total,
            "acting_share": acting[name] / total,
            "gflop_per_env_step": flops / 1e9,
            "learning_gflops_achieved": achieved,
            "fraction_of_matmul_peak": achieved / peak,
        }
    td3 = out["td3"]
    for name in setups:
        out[name]["wall_time_vs_td3"] = td3["env_steps_per_s"] / out[name]["env_steps_per_s"]
        out[name]["gflops_vs_td3"] = (
            out[name]["learning_gflops_achieved"] / td3["learning_gflops_achieved"]
        )
    out["matmul_peak_gflops"] = peak
    out["matmul_gflops"] = rates
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
