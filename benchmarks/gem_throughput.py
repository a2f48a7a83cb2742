"""Learning cost of GEM vs its TD3 switch: one chunk (targets, memory refresh, 200 gradient steps
for 100 environment steps) with a full 100k-row memory, at the preset sizes ([400, 300] LayerNorm
networks, batch 128). Prints ONE JSON object (seconds, median of timed calls after a warm-up;
environment stepping is not included: it is ~1 % of a chunk on CPU).

    python benchmarks/gem_throughput.py [--task hopper] [--runs 5] [--quick]

The two agents are timed alternately in one process, so their ratio is robust to machine noise.
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
from agent.config import load_config  # noqa: E402
from agent.gem import GEMAgent  # noqa: E402
from agent.online import empty_rows  # noqa: E402


def filled_state(agent: GEMAgent, spec, capacity: int, chunk: int):
    """A state whose memory holds `capacity` rows of random 1000-step episodes."""
    rng = np.random.default_rng(0)
    state = agent.init_state(jax.random.PRNGKey(0))
    for start in range(0, capacity, chunk):
        rows = empty_rows(chunk, spec.obs_dim, spec.act_dim)
        for key in ("observations", "next_observations", "rewards"):
            rows[key][:] = rng.normal(size=rows[key].shape)
        rows["actions"][:] = rng.uniform(-1, 1, rows["actions"].shape)
        rows["masks"][:] = 1.0
        rows["episode_ends"][:] = (start + np.arange(chunk)) % 1000 == 999
        state, _ = agent.observe(state, rows, learn=False)
    return state, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="hopper")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="debug sizes (smoke run)")
    args = parser.parse_args()
    spec = envs.get_task(args.task)
    presets = ["debug"] if args.quick else []
    agents = {
        name: GEMAgent(load_config([f"{name}_{args.task}", *presets]), spec.obs_dim, spec.act_dim)
        for name in ("gem", "td3")
    }
    g = agents["gem"].g
    states = {k: filled_state(a, spec, g.capacity, g.train_every) for k, a in agents.items()}
    refresh = jax.jit(agents["gem"].refresh_memory)
    times: dict[str, list[float]] = {"gem": [], "td3": [], "gem_refresh": []}
    for run in range(args.runs + 1):  # run 0 compiles
        for name, agent in agents.items():
            state, rows = states[name]
            start = time.perf_counter()
            jax.block_until_ready(agent.observe(state, rows, learn=True))
            if run:
                times[name].append(time.perf_counter() - start)
        state = states["gem"][0]
        start = time.perf_counter()
        jax.block_until_ready(refresh(state, state.key))
        if run:
            times["gem_refresh"].append(time.perf_counter() - start)
    median = {k: float(np.median(v)) for k, v in times.items()}
    print(
        json.dumps(
            {
                "task": args.task,
                "backend": jax.default_backend(),
                "capacity": g.capacity,
                "gradient_steps_per_chunk": g.gradient_steps,
                "env_steps_per_chunk": g.train_every,
                "gem_chunk_s": median["gem"],
                "td3_chunk_s": median["td3"],
                "gem_memory_refresh_s": median["gem_refresh"],
                "gem_over_td3": median["gem"] / median["td3"],
                "gem_env_steps_per_s": g.train_every / median["gem"],
                "td3_env_steps_per_s": g.train_every / median["td3"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
